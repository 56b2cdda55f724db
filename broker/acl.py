"""amqtt topic plugin: provisioning's ACL applied to publish, subscribe and receive.

amqtt's packaged `TopicAccessControlListPlugin` rejects the documented `subscribe_acl` and
`receive_acl` keys and matches patterns without MQTT's `$` rule; this one reads
`acl.toml` (broker/credentials.py). Without an ACL file every authenticated client may do
everything (fine for development, logged as a warning at start).

The broker calls `check()` directly, synchronously, for every delivery (the plugin manager's
path creates a task per plugin per call); `topic_filtering()` is the same decision through
amqtt's plugin API.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BaseTopicPlugin
from amqtt.session import Session

from .credentials import AclTable

log = logging.getLogger("broker.acl")


class EdgeAclPlugin(BaseTopicPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """See the module docstring."""

    @dataclass
    class Config:
        acl_file: str | None = None

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.table: AclTable | None = None
        self.reload()

    def load(self) -> AclTable | None:
        """Read the ACL file (None without one); raises `CredentialsError`."""
        return AclTable.load(Path(self.config.acl_file)) if self.config.acl_file else None

    def reload(self) -> None:
        self.table = self.load()

    def check(self, username: str | None, topic: str, action: str) -> bool:
        table = self.table
        if table is None:
            return True
        if action == "publish":
            return table.can_publish(username, topic)
        if action == "subscribe":
            return table.can_subscribe(username, topic)
        return table.can_receive(username, topic)

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        if topic is None or action is None:
            return False
        return self.check(session.username if session else None, topic, str(action))
