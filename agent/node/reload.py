"""Reload (SIGHUP, `sys.reload`): the trust store and the configuration, all or nothing.

    report = reload_agent(agent)     # ReloadReport, or ReloadError: the agent keeps what it had

The configuration file is read again with the `EDGE_*` variables the agent started with. Keys in
`HOT_KEYS` take effect at once; any other key that changed is reported in `restart_needed` and
keeps its running value until the next start (the broker connection, the store, the worker pool
and the identity are built once). Both files are read and checked before anything is applied: a
broken trust store or configuration changes nothing and raises `ReloadError` with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from ..protocol import TrustStore, TrustStoreError
from .config import SECTION_CLASSES, Config, load_config
from .errors import ConfigError, ReloadError
from .observe.audit import AuditLog

log = logging.getLogger(__name__)
_ONE_AT_A_TIME = threading.Lock()  # SIGHUP (main thread) and sys.reload (intake thread)

#: Keys whose new value is used as soon as the reload returns.
HOT_KEYS = frozenset(
    {
        "log.level",
        "rejects.rate_per_s",
        "events.enabled",
        "heartbeat.interval_s",
        "limits.queue_capacity",
        "limits.queue_bytes",
        "limits.max_timeout_s",
        "scheduling.retry_base_s",
        "scheduling.retry_max_s",
        "scheduling.retry_jitter",
        "security.clock_skew_s",
        "security.max_lifetime_s",
        "workers.grace_s",
        "store.retention_days",
    }
)


@dataclass(frozen=True)
class ReloadReport:
    """What a reload did; `to_body()` is the `sys.reload` result."""

    trusted_keys: int
    applied: tuple[str, ...]
    restart_needed: tuple[str, ...]
    config_file: str | None

    def to_body(self) -> dict[str, Any]:
        return {
            "trusted_keys": self.trusted_keys,
            "config_file": self.config_file,
            "applied": list(self.applied),
            "restart_needed": list(self.restart_needed),
        }


def changed_keys(old: Config, new: Config) -> list[str]:
    """`section.key` of every setting whose value differs."""
    changed = []
    for section in SECTION_CLASSES:
        before, after = getattr(old, section), getattr(new, section)
        for f in dataclasses.fields(before):
            if getattr(before, f.name) != getattr(after, f.name):
                changed.append(f"{section}.{f.name}")
    return changed


def merge_hot(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """`old` with the hot keys of `new`; returns it, the keys applied and those needing a restart."""
    changed = changed_keys(old, new)
    applied = [key for key in changed if key in HOT_KEYS]
    by_section: dict[str, dict[str, Any]] = {}
    for key in applied:
        section, name = key.split(".", 1)
        by_section.setdefault(section, {})[name] = getattr(getattr(new, section), name)
    merged = old.replace(**by_section) if by_section else old
    return merged, applied, [key for key in changed if key not in HOT_KEYS]


def reread(config: Config) -> Config:
    """The configuration file again, with the same `EDGE_*` variables (ConfigError if broken)."""
    if config.source is None:
        return config
    return load_config(config.source, environ=config.environ)


class Reloadable(Protocol):
    """What a reload reads and calls (agent.node.app.Agent)."""

    config: Config
    trust: TrustStore
    audit: AuditLog

    def reconfigure(self, config: Config) -> None:
        """Every part that reads a hot key gets `config` (HOT_KEYS changed, nothing else)."""


def reload_agent(agent: Reloadable) -> ReloadReport:
    """Read both files, then apply; on any error nothing changes and `ReloadError` says why."""
    with _ONE_AT_A_TIME:
        return _reload(agent)


def _reload(agent: Reloadable) -> ReloadReport:
    try:
        new = reread(agent.config)
        agent.trust.reload()  # replaces the keys only when the whole file is valid
    except (ConfigError, TrustStoreError) as exc:
        what = "configuration" if isinstance(exc, ConfigError) else "trust store"
        message = f"{what} not reloaded, the agent keeps its current settings and keys: {exc}"
        log.error("reload failed: %s", message)
        agent.audit.record("reload_failed", error=str(exc))
        raise ReloadError(message) from None
    merged, applied, restart_needed = merge_hot(agent.config, new)
    if applied:
        agent.reconfigure(merged)
    report = ReloadReport(
        len(agent.trust),
        tuple(applied),
        tuple(restart_needed),
        None if agent.config.source is None else str(agent.config.source),
    )
    log.info(
        "trust store reloaded: %d keys; configuration: applied %s; needing a restart: %s",
        report.trusted_keys,
        ", ".join(applied) or "nothing",
        ", ".join(restart_needed) or "nothing",
    )
    agent.audit.record("reload", keys=report.trusted_keys, applied=applied, restart_needed=restart_needed)
    return report
