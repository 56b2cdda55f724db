"""The agent's keys, loaded from its bundle before it starts: its signing key and trust store.

Each failure is a `ConfigError` naming the setting whose file is wrong, so that an operator who
copied half a bundle reads which file is missing rather than a traceback.
"""

from __future__ import annotations

from ..protocol import Signer, TrustStore, TrustStoreError, load_signer
from .config import Config
from .errors import ConfigError


def load_agent_signer(config: Config) -> Signer:
    path = config.security.signing_key
    assert path is not None  # checked by config validation
    try:
        signer = load_signer(path, kid=config.node)
    except ValueError as exc:
        raise ConfigError("security.signing_key", str(exc)) from None
    if signer.alg != "ed25519":
        raise ConfigError("security.signing_key", f"an agent signs with Ed25519, {path} is {signer.alg}")
    return signer


def load_trust(config: Config) -> TrustStore:
    path = config.security.trust_store
    assert path is not None
    try:
        return TrustStore.load(path)
    except TrustStoreError as exc:
        raise ConfigError("security.trust_store", str(exc)) from None
