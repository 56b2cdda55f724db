"""How long a disconnected persistent session is kept, by the identity's role.

An agent's session holds the tasks published while the agent is away, so it is kept for
`limits.agent_session_expiry_s` (default 0: for ever). Every other session (devices,
operators, dashboards, anonymous clients; and every identity when no acl.toml names roles)
expires after `limits.session_expiry_s` (default one day): a client that stopped coming back,
or that used a random client id with clean_session 0, must not hold a queue for ever. An
identity is an agent when provisioning's acl.toml gives it `role = "agent"`. The time counts
from the disconnect, or from the broker's start for a session restored from its store.

Thread rule: the broker's event loop only (the caller owns the sessions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from amqtt.session import Session

from .config import LimitSettings

AGENT_ROLE = "agent"


@dataclass(frozen=True)
class Expired:
    client_id: str
    username: str | None
    offline_s: float
    setting: str  # the limit that applies, e.g. "limits.session_expiry_s"
    limit_s: int


class SessionExpiry:
    """Which disconnected sessions are past their role's limit; `role_of` reads acl.toml."""

    def __init__(self, limits: LimitSettings, role_of: Callable[[str | None], str | None]) -> None:
        self.limits = limits
        self.role_of = role_of

    def limit_for(self, username: str | None) -> tuple[str, int]:
        """(setting, seconds; 0 for never) of an identity's sessions."""
        if self.role_of(username) == AGENT_ROLE:
            return "limits.agent_session_expiry_s", self.limits.agent_session_expiry_s
        return "limits.session_expiry_s", self.limits.session_expiry_s

    def expired(self, sessions: Iterable[tuple[str, Session]], now: float) -> Iterator[Expired]:
        for client_id, session in sessions:
            since = session.last_disconnect_time
            if session.clean_session or session.transitions.state != "disconnected" or since is None:
                continue
            setting, limit = self.limit_for(session.username)
            offline = now - since
            if limit and offline > limit:
                yield Expired(client_id, session.username, offline, setting, limit)


def left_over(sessions: Iterable[tuple[str, Session]]) -> list[str]:
    """Disconnected clean sessions still registered (what amqtt's monitor swept up)."""
    return [cid for cid, s in sessions if s.clean_session and s.transitions.state == "disconnected"]
