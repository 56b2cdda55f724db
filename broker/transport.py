"""Sockets as the broker sees them: TCP_NODELAY, a packet size limit, TLS contexts.

* FIX-NODELAY: amqtt leaves Nagle's algorithm on, so a small PUBACK or PUBLISH waits for the
  peer's delayed ACK (QoS 1 round trips of ~44 ms). Every accepted socket gets TCP_NODELAY.
* FIX-PACKET-LIMIT: amqtt reads whatever length a packet header announces (up to 256 MB); the
  reader here refuses any read over `limits.max_packet_size`, which closes that connection.
* FIX-TLS-REQUIRE-CERT: amqtt's TLS context asks for a client certificate but accepts a client
  without one (`CERT_OPTIONAL`); a listener with `require_certificate` here uses
  `CERT_REQUIRED`, so the handshake itself fails without a certificate signed by the CA.
* FIX-COALESCE: amqtt writes every packet with its own `send()`; with TCP_NODELAY on loopback
  that system call is most of the broker's CPU time. Packets written in one event-loop
  iteration (a burst of PUBACKs, the outbox's window of PUBLISHes) leave in one `send()` at
  the start of the next iteration: fewer system calls, no added wait.
* FIX-WRITER-CLOSE: amqtt's `StreamWriterAdapter.close()` marks itself closed, then drains; when
  the drain fails (the peer is gone) the transport is never closed and its socket leaks, and
  when the peer stops reading the drain never returns. Here the drain is bounded and the
  transport is always closed (aborted if its buffer cannot be flushed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

from amqtt.adapters import (
    ReaderAdapter,
    StreamReaderAdapter,
    StreamWriterAdapter,
    WebSocketsReader,
    WebSocketsWriter,
)
from websockets.exceptions import ConnectionClosed

from .config import ListenerSettings
from .errors import PacketTooLarge, StartError

log = logging.getLogger("broker.transport")

CLOSE_DRAIN_S = 5.0
HIGH_WATER = 256 * 1024  # bytes waiting in a send buffer before the outbox stops writing


async def read_packet(reader: Any) -> tuple[int, bytes]:
    """One whole MQTT packet: (first byte, body). Its size is checked before its body is read."""
    head = await reader.read(2)
    if len(head) < 2:
        raise EOFError("connection closed")
    first, byte = head[0], head[1]
    length, shift = byte & 0x7F, 7
    while byte & 0x80:
        if shift > 21:
            raise ValueError("malformed remaining length [MQTT-2.2.3]")
        more = await reader.read(1)
        if not more:
            raise EOFError("connection closed")
        byte = more[0]
        length |= (byte & 0x7F) << shift
        shift += 7
    limit = getattr(reader, "max_packet_size", None)
    if limit is not None and length > limit:
        raise PacketTooLarge(f"a packet of {length} bytes, over limits.max_packet_size ({limit})")
    body = await reader.read(length) if length else b""
    if len(body) < length:
        raise EOFError("connection closed")
    return first, bytes(body)


def encode_packet(first: int, body: bytes) -> bytes:
    """The bytes of a packet `read_packet` returned, as they came: fixed header, then body."""
    head, length = bytearray([first]), len(body)
    while True:
        byte, length = length & 0x7F, length >> 7
        head.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(head) + body


def protocol_level(body: bytes) -> int | None:
    """The protocol level of a CONNECT body (4 = MQTT 3.1.1, 5 = MQTT 5, 3 = MQIsdp 3.1)."""
    if len(body) < 2:
        return None
    name_end = 2 + int.from_bytes(body[:2], "big")
    return body[name_end] if name_end < len(body) else None


class ReplayReader(ReaderAdapter):  # type: ignore[misc]  # amqtt ships no type information
    """Serves bytes already read from a connection (its CONNECT), for amqtt's parser to read again."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = len(self._data)
        chunk, self._data = self._data[:n], self._data[n:]
        return chunk

    def feed_eof(self) -> None:
        self._data = b""


def set_nodelay(transport: Any) -> None:
    """TCP_NODELAY on the socket under an asyncio transport (no-op for anything else)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # the peer may already be gone
            log.debug("TCP_NODELAY not set: %s", exc)


class _SizeLimit:
    """A reader adapter's `read` with a ceiling: no packet body can be larger than one read."""

    max_packet_size: int

    async def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.max_packet_size:
            raise PacketTooLarge(
                f"a packet of more than {self.max_packet_size} bytes (limits.max_packet_size)"
            )
        data: bytes = await super().read(n)  # type: ignore[misc]  # the adapter this is mixed into
        return data


class LimitedStreamReader(_SizeLimit, StreamReaderAdapter):  # type: ignore[misc]  # amqtt: no types
    """amqtt's stream reader with the size limit."""

    def __init__(self, reader: asyncio.StreamReader, max_packet_size: int) -> None:
        super().__init__(reader)
        self.max_packet_size = max_packet_size


class LimitedWebSocketsReader(_SizeLimit, WebSocketsReader):  # type: ignore[misc]  # amqtt: no types
    """amqtt's WebSocket reader with the size limit."""

    def __init__(self, protocol: Any, max_packet_size: int) -> None:
        super().__init__(protocol)
        self.max_packet_size = max_packet_size


class ClosingStreamWriter(StreamWriterAdapter):  # type: ignore[misc]  # amqtt ships no type information
    """amqtt's stream writer with coalesced writes (FIX-COALESCE) and a `close()` that always
    releases the socket (FIX-WRITER-CLOSE)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__(writer)
        self._stream = writer
        self.is_closed: bool = False
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if self.is_closed:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending and not self._stream.transport.is_closing():
            self._stream.write(b"".join(self._pending))
        self._pending.clear()

    async def drain(self) -> None:
        if not self.is_closed:
            await self._stream.drain()

    def blocked(self) -> bool:
        return self._stream.transport.get_write_buffer_size() > HIGH_WATER

    async def close(self) -> None:
        if self.is_closed:
            return
        self._flush()
        self.is_closed = True
        transport = self._stream.transport
        try:
            await asyncio.wait_for(self._stream.drain(), CLOSE_DRAIN_S)
        except (OSError, asyncio.TimeoutError, RuntimeError):
            transport.abort()  # the peer is gone or does not read: nothing more to flush
            return
        if self._stream.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                self._stream.write_eof()
        transport.close()


class CoalescingWebSocketsWriter(WebSocketsWriter):  # type: ignore[misc]  # amqtt ships no type information
    """amqtt's WebSocket writer sends only on `drain()`; this one, like `ClosingStreamWriter`,
    sends what was written in one loop iteration as one WebSocket message, in order."""

    def __init__(self, protocol: Any) -> None:
        super().__init__(protocol)
        self._ws = protocol
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending and not self._closed:
            self._outgoing.put_nowait(b"".join(self._pending))
            if self._sender is None:
                self._sender = asyncio.create_task(self._send_all())
        self._pending.clear()

    async def _send_all(self) -> None:
        while True:
            data = await self._outgoing.get()
            try:
                await self._ws.send(data)
            except ConnectionClosed:
                self._closed = True
            finally:
                self._outgoing.task_done()

    async def drain(self) -> None:
        self._flush()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._outgoing.join(), CLOSE_DRAIN_S)

    def blocked(self) -> bool:
        return self._outgoing.qsize() > 64

    async def close(self) -> None:
        if not self._closed:
            await self.drain()
        self._closed = True
        if self._sender is not None:
            self._sender.cancel()
        with contextlib.suppress(Exception):
            await self._ws.close()


def server_context(listener: ListenerSettings, key: str) -> ssl.SSLContext:
    """The TLS context of one listener; `key` names it in errors (`listeners.tls`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(listener.certfile), str(listener.keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise StartError(f"{key}.certfile/keyfile: cannot load {listener.certfile}: {exc}") from None
    if listener.cafile is not None:
        try:
            context.load_verify_locations(cafile=str(listener.cafile))
        except (OSError, ssl.SSLError) as exc:
            raise StartError(f"{key}.cafile: cannot load {listener.cafile}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED if listener.require_certificate else ssl.CERT_OPTIONAL
    if listener.crlfile is not None:
        try:
            context.load_verify_locations(cafile=str(listener.crlfile))
        except (OSError, ssl.SSLError) as exc:
            raise StartError(f"{key}.crlfile: cannot load {listener.crlfile}: {exc}") from None
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context
