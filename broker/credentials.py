"""Provisioning's broker files, read in one place: the password file and the ACL.

`edge-provision broker-files --format amqtt --out DIR` writes:

* `passwd`: Mosquitto's format, one `user:$7$iterations$b64salt$b64hash` line per identity
  (PBKDF2-HMAC-SHA512), so the same file serves Mosquitto and this broker; `#` comments allowed.
* `acl.toml`: per identity, the topic filters it may publish to and subscribe to::

      [users."node-1"]
      publish = ["edge/results/node-1/+", "edge/presence/node-1"]
      subscribe = ["edge/tasks/node-1", "edge/tasks/all"]

      [anonymous]            # optional: what clients without a username may do
      subscribe = ["public/#"]

If provisioning's format moves, this module is the one place to adapt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.common import tomlio
from agent.common.passwords import DUMMY, PasswordHash
from agent.common.passwords import hash_password as hash_password

from .errors import CredentialsError
from .topicfilter import grants_subscription, matches, valid_filter

#: Hashes at least this costly are verified in a worker thread so that a connect flood cannot stall the loop.
THREAD_ITERATIONS = 1000
_CACHE_LIMIT = 20_000


@dataclass(frozen=True)
class PasswordFile:
    """The users of a password file and their hashes."""

    users: Mapping[str, PasswordHash] = field(default_factory=dict)
    source: str = "<memory>"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PasswordFile:
        return cls.parse(_read(path), str(path))

    @classmethod
    def parse(cls, text: str, source: str = "<memory>") -> PasswordFile:
        users: dict[str, PasswordHash] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user:
                raise CredentialsError(f"{source}:{number}: expected `user:$7$...`")
            if user in users:
                raise CredentialsError(f"{source}:{number}: user {user!r} appears twice")
            try:
                users[user] = PasswordHash.parse(hashed)
            except ValueError as exc:
                raise CredentialsError(f"{source}:{number}: user {user!r}: {exc}") from None
        return cls(users, source)

    def hash_of(self, user: str) -> PasswordHash | None:
        return self.users.get(user)

    def verify(self, user: str, password: str) -> bool:
        entry = self.users.get(user)
        if entry is None:
            DUMMY.verify(password)
            return False
        return entry.verify(password)


@dataclass(frozen=True)
class UserAcl:
    """What one identity may do: filters it may publish to, filters it may subscribe to; and its
    `role` (provisioning's kind: agent, device, operator, dashboard), which decides how long its
    disconnected sessions are kept (broker/expiry.py)."""

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    role: str | None = None


class AclTable:
    """The ACL of every identity; users it does not list may do nothing.

    * publish: the topic must match one of the user's `publish` filters;
    * subscribe: the whole subscription filter must lie inside one of its `subscribe` filters; a
      shared subscription `$share/{group}/{filter}` needs a `$share/{group}/...` filter of the
      same group (`topicfilter.grants_subscription`);
    * receive: the topic of a message (live, queued or retained) must match one of them.
    """

    def __init__(
        self, users: Mapping[str, UserAcl], anonymous: UserAcl | None = None, source: str = "<memory>"
    ) -> None:
        self.users = dict(users)
        self.anonymous = anonymous or UserAcl()
        self.source = source
        self._cache: dict[tuple[str, str | None, str], bool] = {}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AclTable:
        text = _read(path)
        try:
            doc = tomlio.loads(text)
        except tomlio.TOMLDecodeError as exc:
            raise CredentialsError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(doc, str(path))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "<memory>") -> AclTable:
        unknown = set(doc) - {"users", "anonymous", "format"}
        if unknown:
            raise CredentialsError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
        users_doc = doc.get("users", {})
        if not isinstance(users_doc, dict):
            raise CredentialsError(f"{source}: `users` must be a table of identities")
        users = {name: _user_acl(entry, f"{source}: users.{name}") for name, entry in users_doc.items()}
        anonymous = _user_acl(doc["anonymous"], f"{source}: anonymous") if "anonymous" in doc else None
        return cls(users, anonymous, source)

    def rules_for(self, user: str | None) -> UserAcl | None:
        return self.anonymous if user is None else self.users.get(user)

    def role_of(self, user: str | None) -> str | None:
        rules = self.rules_for(user)
        return rules.role if rules is not None else None

    def can_publish(self, user: str | None, topic: str) -> bool:
        return self._decide(user, topic, "publish")

    def can_subscribe(self, user: str | None, topic_filter: str) -> bool:
        return self._decide(user, topic_filter, "subscribe")

    def can_receive(self, user: str | None, topic: str) -> bool:
        return self._decide(user, topic, "receive")

    def _decide(self, user: str | None, topic: str, action: str) -> bool:
        key = (action, user, topic)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        rules = self.rules_for(user)
        if rules is None:
            allowed = False
        elif action == "publish":
            allowed = any(matches(pattern, topic) for pattern in rules.publish)
        elif action == "subscribe":
            allowed = any(grants_subscription(pattern, topic) for pattern in rules.subscribe)
        else:
            allowed = any(matches(pattern, topic) for pattern in rules.subscribe)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = allowed
        return allowed


def _user_acl(entry: object, where: str) -> UserAcl:
    if not isinstance(entry, dict):
        raise CredentialsError(f"{where} must be a table with `publish` and `subscribe` lists")
    unknown = set(entry) - {"publish", "subscribe", "role"}
    if unknown:
        raise CredentialsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("publish", "subscribe"):
        values = entry.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise CredentialsError(f"{where}.{key} must be a list of topic filters")
        bad = [v for v in values if not valid_filter(v)]
        if bad:
            raise CredentialsError(f"{where}.{key}: {bad[0]!r} is not a valid MQTT topic filter")
        lists[key] = tuple(values)
    role = entry.get("role")
    if role is not None and not isinstance(role, str):
        raise CredentialsError(f"{where}.role must be a string (agent, device, operator, dashboard)")
    return UserAcl(publish=lists["publish"], subscribe=lists["subscribe"], role=role)


def _read(path: str | os.PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialsError(f"{path}: no such file (make it with `edge-provision broker-files`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"{path}: cannot read: {exc}") from None
