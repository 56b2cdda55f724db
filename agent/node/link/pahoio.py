"""paho's client with its socket I/O batched: fewer system calls per packet, fewer GIL hand-offs.

Why: paho reads a packet with three or more `recv` calls (the command byte, each byte of the
remaining length, then the rest) and ends every read with one more that fails with EAGAIN; it
sends every queued packet with its own `send`, and every packet it queues also writes a byte to
its wake-up socket pair. Each of those calls releases the GIL, and in the agent, where five
threads share it, each release costs a hand-off to another thread and a wait to get it back. The
agent benchmark counted 7.4 `recv` and 4 `send` calls on the network thread per task.

`BatchingClient` keeps paho's packet logic and changes only where bytes come from and go to:

* reads: one `recv` of up to `READ_SIZE` bytes fills a buffer that paho's byte-wise reads are
  served from; a packet that is whole in the buffer is cut out of it at once and handed to
  paho's `_packet_handle`, as paho's `_packet_read` does when it has read one (a partial packet
  still goes through paho's own byte-wise path); `loop_read` goes on until the buffer is empty,
  so nothing waits in it while `select` sleeps;
* writes: consecutive queued packets that need nothing after they are written (everything but a
  QoS 0 PUBLISH, whose `on_publish` paho calls when it is written, and a DISCONNECT, after which
  paho closes the socket) are joined into one `send`;
* `quiet()`: while the network thread itself queues packets (between two loop iterations), the
  wake-up byte is not written: that thread is not in `select`, and its next loop writes them.
  Other threads wake it with `wake()`, which still reaches the pair while it is hidden;
* `publish_here()`: another thread publishes and writes the packet itself, with no wake-up byte
  and no hand-off to the network thread (the agent's store writer sends each durable result this
  way; inside `writes_held()` the packets of several calls are written together at its end).
  Only on a plain socket: an SSL object must not write on one thread while it reads on another,
  so with TLS only the network thread writes. Writes are serialised by `_write_lock`; whatever
  the calling thread cannot write at once (the network thread is writing, a partial or refused
  send, a packet after which paho must act) is left queued and the network thread is woken.

The buffer is dropped whenever paho closes the socket, so a reconnect never reads stale bytes.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

#: One `recv` of this many bytes at most (a burst of tasks of a few hundred bytes each).
READ_SIZE = 1 << 16

_PUBLISH, _DISCONNECT = 0x30, 0xE0
_MAX_LENGTH_BYTES = 4  # of the remaining length (MQTT 2.2.3); more is paho's protocol error


def _no_packet() -> Any:  # paho's private TypedDict `_InPacket`
    """paho's `_in_packet` between two packets (as its `_packet_read` resets it)."""
    return {
        "command": 0,
        "have_remaining": 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": 0,
        "packet": bytearray(b""),
        "to_process": 0,
        "pos": 0,
    }


def whole_packet(buffer: bytes, pos: int) -> tuple[int, int, int] | None:
    """(command, start of the body, end of the body) of the packet at `pos` if it is whole in
    `buffer`; None if it is not (or its length is malformed: paho's own path reports that)."""
    size = len(buffer)
    length, shift, i = 0, 0, pos + 1
    while True:
        if i >= size or i - pos > _MAX_LENGTH_BYTES:
            return None
        byte = buffer[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            break
        shift += 7
    end = i + length
    return (buffer[pos], i, end) if end <= size else None


def _needs_nothing_after(packet: dict[str, Any]) -> bool:
    """paho does nothing once this packet is written (see `Client._packet_write`)."""
    command = packet["command"] & 0xF0
    return command != _DISCONNECT and not (command == _PUBLISH and packet["qos"] == 0)


def _joined(run: list[dict[str, Any]]) -> dict[str, Any]:
    if len(run) == 1:
        return run[0]
    data = b"".join(bytes(p["packet"][p["pos"] :]) for p in run)
    first = run[0]
    return {
        "command": first["command"],
        "mid": first["mid"],
        "qos": first["qos"],
        "pos": 0,
        "to_process": len(data),
        "packet": data,
        "info": None,
    }


class BatchingClient(paho.Client):
    """paho's `Client`, reading and writing in batches (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_pos = 0
        self._hidden_wake: Any = None  # the wake-up socket while `quiet()` hides it from paho
        self._write_lock = threading.Lock()  # one thread writes to the socket at a time
        self._here = threading.local()  # `.queuing`: publish_here is queuing on this thread

    # -- reads ---------------------------------------------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        buffer, pos = self._read_buffer, self._read_pos
        if pos >= len(buffer):
            buffer = super()._sock_recv(READ_SIZE)  # BlockingIOError, OSError: as paho expects
            if not buffer:
                return buffer  # the broker closed the connection
            pos = 0
        end = min(pos + bufsize, len(buffer))
        self._read_buffer, self._read_pos = buffer, end
        return buffer[pos:end]

    def _packet_read(self) -> MQTTErrorCode:
        if self._in_packet["command"] == 0:  # between packets: the next may be whole in the buffer
            found = whole_packet(self._read_buffer, self._read_pos)
            if found is not None:
                return self._handle_whole(*found)
        return super()._packet_read()

    def _handle_whole(self, command: int, start: int, end: int) -> MQTTErrorCode:
        """What paho's `_packet_read` does once a packet is read, without reading it byte by byte."""
        body = bytearray(self._read_buffer[start:end])
        self._read_pos = end
        packet = _no_packet()
        packet.update(command=command, have_remaining=1, remaining_length=len(body), packet=body)
        self._in_packet = packet
        try:
            rc: MQTTErrorCode = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(paho.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = _no_packet()
        with self._msgtime_mutex:
            self._last_bytes_received = paho.time_func()
        return rc

    def buffered(self) -> int:
        """Bytes read from the socket that paho has not taken yet."""
        return len(self._read_buffer) - self._read_pos

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        while True:
            rc = super().loop_read(max_packets)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None or not self.buffered():
                return rc

    def _sock_close(self) -> None:
        self._read_buffer, self._read_pos = b"", 0
        super()._sock_close()

    # -- writes --------------------------------------------------------------------------------------

    def _packet_write(self) -> MQTTErrorCode:
        with self._write_lock:
            return self._write_queued()

    def _write_queued(self) -> MQTTErrorCode:
        out: deque[Any] = self._out_packet
        if len(out) > 1:
            self._coalesce(out)
        return super()._packet_write()

    def _packet_queue(
        self, command: int, packet: bytes | bytearray, mid: int, qos: int, info: Any = None
    ) -> MQTTErrorCode:
        if not getattr(self._here, "queuing", False):
            return super()._packet_queue(command, packet, mid, qos, info)
        # publish_here: queued only; the calling thread writes it next (no wake-up byte)
        self._out_packet.append(
            {
                "command": command,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": info,
            }
        )
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def publish_here(self, topic: str, payload: bytes, qos: int) -> int:
        """Publish and write the packet from the calling thread (plain sockets only: see the module
        docstring); returns its mid. What cannot be written at once is left to the network thread."""
        here = self._here
        here.queuing = True
        try:
            info = self.publish(topic, payload, qos=qos)
        finally:
            here.queuing = False
        if not getattr(here, "holding", False):
            self._write_here_or_wake()
        return int(info.mid)

    @contextlib.contextmanager
    def writes_held(self) -> Iterator[None]:
        """`publish_here` calls of this thread inside only queue their packets; one write sends
        them all at the end (a group commit's results: one `send`, one GIL hand-off, not one each).
        The network thread may still write them meanwhile, as it writes anything queued."""
        here = self._here
        if getattr(here, "holding", False):  # nested: the outer block writes
            yield
            return
        here.holding = True
        try:
            yield
        finally:
            here.holding = False
            self._write_here_or_wake()

    def _write_here_or_wake(self) -> None:
        """Write what is queued from this thread, or leave it to the network thread, woken."""
        if not self._write_here():
            self.wake()

    def _write_here(self) -> bool:
        """Write the queued packets unless another thread is writing; True if none is left."""
        out: deque[Any] = self._out_packet
        if not self._write_lock.acquire(blocking=False):
            return not out
        try:
            # A snapshot: the network thread may queue packets (acks) while this one looks, and a
            # deque changed during a Python-level iteration raises. tuple() copies it in one step.
            if out and self._sock is not None and all(_needs_nothing_after(p) for p in tuple(out)):
                self._write_queued()
            return not out
        finally:
            self._write_lock.release()

    @staticmethod
    def _coalesce(out: deque[Any]) -> None:
        """Join runs of packets that need nothing after their write. Other threads may append
        meanwhile (paho's publish): only the packets there now are taken, and put back in front."""
        taken = [out.popleft() for _ in range(len(out))]
        merged: list[dict[str, Any]] = []
        run: list[dict[str, Any]] = []
        for packet in taken:
            if _needs_nothing_after(packet):
                run.append(packet)
                continue
            if run:
                merged.append(_joined(run))
                run = []
            merged.append(packet)
        if run:
            merged.append(_joined(run))
        out.extendleft(reversed(merged))

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """The network thread queues packets without waking itself (see the module docstring)."""
        wake = self._sockpairW
        self._hidden_wake = wake  # set before the pair is hidden, cleared after it is back: see wake()
        self._sockpairW = None
        try:
            yield
        finally:
            if self._sockpairW is None:  # paho may have made a new pair meanwhile (reconnect)
                self._sockpairW = wake
            self._hidden_wake = None

    def wake(self) -> None:
        """Interrupt the network thread's `select` (any thread; as paho's publish does)."""
        hidden = self._hidden_wake  # read first: whichever way `quiet()` is interleaved, one is set
        sock = self._sockpairW or hidden
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.send(b"w")
