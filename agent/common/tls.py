"""The TLS context of an MQTT client (the agent's link, edge-submit, edge-watch), from the
`[mqtt]` files of a bundle, and TCP_NODELAY on its socket. Errors are `ConfigError`s naming the
key of the file that failed. Builds a new context per call; no shared state."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

from .errors import ConfigError


def tls_context(
    ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None, *, key: str = "mqtt"
) -> ssl.SSLContext:
    """A client context: TLS 1.2 or later, the fleet CA, the client's certificate for mutual TLS."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{key}.ca_file", f"cannot load {ca_file}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{key}.cert_file", f"cannot load {cert_file} / {key_file}: {exc}") from None
    return context


def nodelay(client: Any, userdata: Any, sock: Any) -> None:
    """paho's `on_socket_open`: TCP_NODELAY, which paho never sets (a QoS 1 round trip drops from
    44-88 ms to about 1 ms, shared/NOTES.md)."""
    if isinstance(sock, (socket.socket, ssl.SSLSocket)):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
