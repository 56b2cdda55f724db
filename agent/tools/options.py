"""What edge-submit's task and batch commands both read from their options and the bundle: the
target of the tasks and the trust store their results are verified with."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from agent.protocol import Task, TrustStore

from .errors import UsageError
from .settings import ClientConfig

PROG = "edge-submit"


def resolve_target(args: argparse.Namespace, config: ClientConfig) -> str | None:
    if getattr(args, "all", False):
        return "all"
    if getattr(args, "pool", None):
        return f"pool:{args.pool}"
    return args.node or config.submit.node


def wants_reply(args: argparse.Namespace, config: ClientConfig) -> bool:
    """Whether the tasks ask for `reply` and the answers are awaited on `{p}/replies/{kid}/...`:
    `--reply`/`--no-reply`, else `submit.reply` (EDGE_SUBMIT_REPLY, which device.env sets), else
    yes for a device bundle (its ACL lets it read only its replies)."""
    for chosen in (getattr(args, "reply", None), config.submit.reply):
        if chosen is not None:
            return bool(chosen)
    return config.role == "device"


def replies_for(signed: Sequence[tuple[str, bytes, Task]], config: ClientConfig) -> str | None:
    """The issuer whose replies topic carries the answers: when every task asked for `reply`
    (otherwise they are read on the results topics)."""
    if signed and all(task.reply for _, _, task in signed):
        return config.kid
    return None


def trusted(config: ClientConfig) -> TrustStore:
    """The trust store answers are verified with (a bundle's `trust.toml`: the agents' keys)."""
    if config.role == "device" and config.security.trust_store is None:
        raise UsageError(
            "this device bundle has no trust store to verify its replies with (it predates replies):"
            " make it again with `edge-provision bundle NAME`, or add --no-wait"
        )
    return config.trust()
