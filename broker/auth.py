"""amqtt authentication plugin: provisioning's passwords and client certificates.

Replaces amqtt's default `AnonymousAuthPlugin`, which lets everyone in and marks every session
anonymous (and so without an offline queue, deleted a second after disconnect). Order:

1. A verified client certificate (TLS listener; the handshake checked it against the fleet CA)
   names the identity by its common name. A username, if sent, must be that name. When a
   password file is configured, the identity's password is required as well: two factors, as
   in Mosquitto's configuration from provisioning (a stolen certificate alone, or a password
   alone over TLS, is not enough); without one the certificate alone admits (a mutual-TLS-only
   broker). An identity no longer in provisioning's files (revoked) is refused even though its
   certificate still verifies.
2. Otherwise a username must come with the right password (`$7$` PBKDF2-SHA512 hash).
3. Otherwise (no username) only when `allow_anonymous` is set.

A refusal records its CONNACK code in `session.attributes[REFUSAL]`: 4 for a wrong username or
password, 5 (not authorized) for everything else.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from amqtt.contexts import BaseContext
from amqtt.mqtt.connack import BAD_USERNAME_PASSWORD, NOT_AUTHORIZED
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from .credentials import THREAD_ITERATIONS, AclTable, PasswordFile

log = logging.getLogger("broker.auth")

IDENTITY = "edge.identity"  # session attribute: the authenticated identity (None: anonymous)
METHOD = "edge.auth"  # session attribute: "certificate", "password" or "anonymous"
REFUSAL = "edge.refusal"  # session attribute: the CONNACK return code of a refusal


def certificate_identity(session: Session) -> str | None:
    """The common name of the client's verified TLS certificate, if it presented one."""
    ssl_object = session.ssl_object
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class EdgeAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """See the module docstring."""

    @dataclass
    class Config:
        password_file: str | None = None
        acl_file: str | None = None  # its users are identities too (certificate-only ones)
        allow_anonymous: bool = False

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.passwords: PasswordFile | None = None
        self.known: frozenset[str] | None = None
        self.reload()

    def reload(self, acl: AclTable | None = None) -> None:
        """Re-read the files (SIGHUP; `acl` if the caller already read it); raises
        `CredentialsError` and keeps the old ones on failure."""
        config = self.config
        passwords = PasswordFile.load(Path(config.password_file)) if config.password_file else None
        if acl is None and config.acl_file:
            acl = AclTable.load(Path(config.acl_file))
        known: set[str] | None = None
        if passwords is not None or acl is not None:
            known = set(passwords.users if passwords else ()) | set(acl.users if acl else ())
        self.passwords = passwords
        self.known = frozenset(known) if known is not None else None

    def still_valid(self, session: Session) -> bool:
        """After a reload: may this connected client stay? (False for a revoked identity.)"""
        identity = session.attributes.get(IDENTITY)
        method = session.attributes.get(METHOD)
        if method == "anonymous":
            return bool(self.config.allow_anonymous)
        if method == "certificate":
            return self.known is None or identity in self.known
        return self.passwords is not None and identity in self.passwords.users

    def squats(self, session: Session) -> bool:
        """FIX-CLIENT-ID: is the (authenticated) client's id the name of another identity of the
        password file or acl.toml? Only that identity may use it: a client that took an agent's
        node id first would own its session and lock the agent out."""
        known = self.known
        return known is not None and session.client_id in known and session.client_id != session.username

    async def authenticate(self, *, session: Session) -> bool:
        cn = certificate_identity(session)
        if cn is not None:
            if not self._certificate(session, cn):
                return False
            if self.passwords is None:  # mutual TLS only: the certificate is the credential
                session.password = None
                return True
            if session.password is None:
                why = f"certificate of {cn!r} without its password (both are required)"
                return self._refuse(session, BAD_USERNAME_PASSWORD, why)
            return await self._password(session, cn, session.password, method="certificate")
        if session.username is not None:
            return await self._password(session, session.username, session.password or "")
        if self.config.allow_anonymous:
            session.attributes[IDENTITY] = None
            session.attributes[METHOD] = "anonymous"
            return True
        return self._refuse(session, NOT_AUTHORIZED, "no username and auth.allow_anonymous is off")

    def _certificate(self, session: Session, cn: str) -> bool:
        if self.known is not None and cn not in self.known:
            return self._refuse(
                session, NOT_AUTHORIZED, f"certificate of {cn!r}: identity unknown or revoked"
            )
        if session.username is not None and session.username != cn:
            why = f"certificate names {cn!r} but the username is {session.username!r}"
            return self._refuse(session, NOT_AUTHORIZED, why)
        session.username = cn
        session.attributes[IDENTITY] = cn
        session.attributes[METHOD] = "certificate"
        return True

    async def _password(
        self, session: Session, username: str, password: str, method: str = "password"
    ) -> bool:
        passwords = self.passwords
        if passwords is None:
            return self._refuse(
                session, BAD_USERNAME_PASSWORD, f"user {username!r}: no password file configured"
            )
        entry = passwords.hash_of(username)
        if entry is not None and entry.iterations >= THREAD_ITERATIONS:
            ok = await asyncio.to_thread(passwords.verify, username, password)
        else:
            ok = passwords.verify(username, password)
        if not ok:
            return self._refuse(
                session, BAD_USERNAME_PASSWORD, f"user {username!r}: wrong password or unknown user"
            )
        session.attributes[IDENTITY] = username
        session.attributes[METHOD] = method
        return True

    @staticmethod
    def _refuse(session: Session, code: int, why: str) -> bool:
        session.attributes[REFUSAL] = code
        log.info("refused client %s from %s: %s", session.client_id, session.remote_address, why)
        return False
