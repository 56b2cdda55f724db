"""Frames: the on-disk unit of every journal, and the rule that tells a crash from damage.

A journal file is `MAGIC` followed by frames; a frame is

    u32 length | u32 crc32(payload) | u32 crc32(the 8 bytes before) | payload   (little endian)

and its payload is one MessagePack value (a store writes one frame per group commit, its
payload the list of that batch's records). The header has a checksum of its own so that a
damaged length is recognised as damage, not taken for a frame that runs past the end.

**The torn-tail rule.** A crash (kill -9, or a power cut before the data was synced) can only
spoil the end of a file: the last write cut short, or zeros where the file system extended the
file but wrote no data. So a bad frame is a *torn tail*, cut off at start, only when

- fewer bytes than a header are left, or everything from it to the end is zero; or
- its header is intact and the frame runs to the end of the file (cut short, or its last bytes
  not written: a bad payload checksum on the last frame).

Every other bad frame has data after it that a crash cannot explain: it is *damage*, and the
store refuses to start, naming the file and the offset (`Scan.damage`), rather than drop the
records after it. Nothing a store acknowledged can sit in a torn tail: a store acknowledges a
frame only after it is written whole and synced.

**Old files.** Journals written before this engine have no magic and no header checksum: the
agent's frames were `<II` (little endian), the broker's `>II` (big endian). A file without the
magic is read with the framing its owner names (`LEGACY_AGENT`, `LEGACY_BROKER`), under the rule
those files were written for (a frame whose length runs past the end is a torn tail). Stores
write new files only in the current framing.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, NamedTuple

import msgpack

MAGIC = b"EDGEJNL\x02"
#: Larger than any frame a store writes (a batch of MQTT messages of at most 256 MiB each...).
MAX_FRAME = 1 << 30


@dataclass(frozen=True)
class Framing:
    name: str
    header: struct.Struct  # length, crc32(payload)[, crc32(length, crc)]
    magic: bytes  # what the file starts with; b"" for the old files, which start with a frame
    checked_header: bool


CURRENT = Framing("edge journal 2", struct.Struct("<III"), MAGIC, True)
LEGACY_AGENT = Framing("agent journal 1 (<II)", struct.Struct("<II"), b"", False)
LEGACY_BROKER = Framing("broker journal 1 (>II)", struct.Struct(">II"), b"", False)
_LENGTH_CRC = struct.Struct("<II")


def pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(payload: bytes) -> Any:
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)


def frame(value: object) -> bytes:
    """One frame of the current framing holding `value`."""
    return frame_bytes(pack(value))


def frame_bytes(payload: bytes) -> bytes:
    head = _LENGTH_CRC.pack(len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def legacy_frame(value: object, framing: Framing) -> bytes:
    """A frame as the code before this engine wrote it (tests of the migration only)."""
    payload = pack(value)
    return framing.header.pack(len(payload), zlib.crc32(payload)) + payload


class Damage(NamedTuple):
    offset: int
    problem: str


class Scan(NamedTuple):
    values: list[Any]  # the payload of every whole, verified frame, in order
    ends: list[int]  # the offset just after each of them
    valid_length: int  # bytes from the start that hold the magic and those frames
    torn_bytes: int  # bytes after them that a crash left (to be cut off)
    framing: Framing
    damage: Damage | None  # what stopped the scan, when it was not a crash


def scan(data: bytes, legacy: Framing = LEGACY_AGENT) -> Scan:
    """Every frame of a journal's bytes, decoded, and what stopped the reading (see the module
    docstring). `legacy`: the framing of a file that does not start with the magic."""
    walk = FrameWalk(io.BytesIO(data), len(data), legacy)
    values: list[Any] = []
    ends: list[int] = []
    for value in walk.values():
        values.append(value)
        ends.append(walk.valid_length)
    return Scan(values, ends, walk.valid_length, walk.torn_bytes, walk.framing, walk.damage)


class FrameWalk:
    """The frames of one file, front to back, in memory bounded by the largest frame: what a
    start uses to check a file that may be large (a day's history) without reading it whole,
    and what readers use to decode such a file a frame at a time.

    `payloads()` yields each whole, verified frame's payload (undecoded), `values()` each one
    decoded; when they end, `valid_length`, `torn_bytes` and `damage` say what stopped them, as
    in `Scan`."""

    def __init__(self, stream: BinaryIO, size: int, legacy: Framing = LEGACY_AGENT) -> None:
        self._stream = stream
        self.size = size
        self.torn_bytes = 0
        self.damage: Damage | None = None
        head = stream.read(len(MAGIC))
        if head == MAGIC:
            self.framing, self.valid_length = CURRENT, len(MAGIC)
        elif size < len(MAGIC) and MAGIC.startswith(head):  # new and empty, or its magic torn
            self.framing, self.valid_length, self.torn_bytes = CURRENT, 0, size
        else:
            stream.seek(0)
            self.framing, self.valid_length = legacy, 0

    def payloads(self) -> Iterator[bytes]:
        header = self.framing.header
        while self.valid_length + self.torn_bytes < self.size:
            offset = self.valid_length
            head = self._stream.read(header.size)
            fields = header.unpack(head) if len(head) == header.size else None
            problem = _header_problem(head, fields, self.framing, offset, self.size)
            payload = b""
            if problem is None and fields is not None:
                payload = self._stream.read(fields[0])
                if zlib.crc32(payload) != fields[1]:
                    problem = "a frame with a wrong checksum"
            if problem is not None:
                self._stop(offset, fields, problem)
                return
            self.valid_length = offset + header.size + len(payload)
            yield payload

    def values(self) -> Iterator[Any]:
        """Each frame's value; a frame whose checksum is right but whose content does not decode
        is damage (a crash cannot write it), and the walk stops before it."""
        start = self.valid_length
        for payload in self.payloads():
            try:
                value = unpack(payload)
            except (ValueError, msgpack.ExtraData) as exc:
                problem = f"a frame whose checksum is right but whose content does not decode ({exc})"
                self.valid_length, self.torn_bytes, self.damage = start, 0, Damage(start, problem)
                return
            start = self.valid_length
            yield value

    def _stop(self, offset: int, fields: tuple[int, ...] | None, problem: str) -> None:
        if self._is_torn_tail(offset, fields):
            self.torn_bytes = self.size - offset
        else:
            self.damage = Damage(offset, problem)

    def _is_torn_tail(self, offset: int, fields: tuple[int, ...] | None) -> bool:
        """See the module docstring: the header cut short, zero fill, or an intact header whose
        frame runs to the end of the file."""
        if fields is None or self._zeros_from(offset):
            return True
        if self.framing.checked_header and not _header_checksum_ok(fields):
            return False  # a damaged header: its length says nothing
        return fields[0] <= MAX_FRAME and offset + self.framing.header.size + fields[0] >= self.size

    def _zeros_from(self, offset: int) -> bool:
        self._stream.seek(offset)
        while chunk := self._stream.read(1 << 20):
            if chunk.strip(b"\0"):
                return False
        return True


def _header_checksum_ok(fields: tuple[int, ...]) -> bool:
    return zlib.crc32(_LENGTH_CRC.pack(fields[0], fields[1])) == fields[2]


def _header_problem(
    head: bytes, fields: tuple[int, ...] | None, framing: Framing, offset: int, size: int
) -> str | None:
    if fields is None:
        return "a frame header cut short"
    if framing.checked_header and not _header_checksum_ok(fields):
        return "a frame header with a wrong checksum"
    length = fields[0]
    if length == 0:
        return "an empty frame"  # a MessagePack value is at least one byte
    if length > MAX_FRAME or offset + len(head) + length > size:
        return f"a frame of {length} bytes running past the end of the file"
    return None
