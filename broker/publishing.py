"""Which publishes (and Wills) the broker drops before routing them, and why.

* `$SYS/...` is the broker's (FIX-DOLLAR);
* the topic must pass the publish ACL (acl.toml);
* a retained publish on a tasks or control topic of the fleet (`protocol.prefix`) is refused:
  PROTOCOL 1 says they are never retained, and a retained task would reach every agent that
  subscribes later, again after each of its restarts (FIX-RETAINED-TASKS).

The caller (core.py) counts and logs a refusal; a refused publish is still acknowledged.

Thread rule: the broker's event loop only.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.protocol.topics import Topics

from .topicfilter import matches

#: `(username, topic, action)` -> allowed, as `Router.allowed`.
AclCheck = Callable[[str | None, str, str], bool]


class PublishRules:
    def __init__(self, allowed: AclCheck, prefix: str) -> None:
        self.allowed = allowed
        self.never_retained = Topics(prefix).never_retained() if prefix else ()

    def refusal(self, username: str | None, topic: str, retain: bool) -> str | None:
        """Why a publish (or Will) to `topic` is dropped; None when it may go through."""
        if topic.startswith("$SYS"):
            return "$SYS is the broker's"
        if not self.allowed(username, topic, "publish"):
            return "not allowed by the ACL"
        if retain and any(matches(f, topic) for f in self.never_retained):
            return "a tasks or control topic is never retained (PROTOCOL 1; protocol.prefix)"
        return None
