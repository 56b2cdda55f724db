"""What edge-submit's task and batch commands both read from their options and the bundle: the
target of the tasks and the trust store their results are verified with."""

from __future__ import annotations

import argparse

from agent.protocol import TrustStore

from .errors import UsageError
from .settings import ClientConfig

PROG = "edge-submit"


def resolve_target(args: argparse.Namespace, config: ClientConfig) -> str | None:
    if getattr(args, "all", False):
        return "all"
    if getattr(args, "pool", None):
        return f"pool:{args.pool}"
    return args.node or config.submit.node


def trusted(config: ClientConfig) -> TrustStore:
    """The trust store results are verified with; a device has none (and may not read results)."""
    if config.role == "device" and config.security.trust_store is None:
        raise UsageError(
            "a device bundle cannot wait for results (no trust store, and its ACL forbids reading"
            " them): add --no-wait, or use an operator bundle to wait for results"
        )
    return config.trust()
