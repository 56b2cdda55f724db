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

import struct
import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

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
    """Every frame of a journal's bytes, and what stopped the reading (see the module docstring).

    `legacy`: the framing of a file that does not start with the magic."""
    if data.startswith(MAGIC):
        framing, offset = CURRENT, len(MAGIC)
    elif len(data) < len(MAGIC) and MAGIC.startswith(data):  # new and empty, or its magic torn
        return Scan([], [], 0, len(data), CURRENT, None)
    else:
        framing, offset = legacy, 0
    values: list[Any] = []
    ends: list[int] = []
    while offset < len(data):
        problem = _problem(data, offset, framing)
        if problem is None:
            length = framing.header.unpack_from(data, offset)[0]
            start = offset + framing.header.size
            try:
                values.append(unpack(data[start : start + length]))
            except (ValueError, msgpack.ExtraData) as exc:  # checksum right, content wrong: not a crash
                problem = f"a frame whose checksum is right but whose content does not decode ({exc})"
                return Scan(values, ends, offset, 0, framing, Damage(offset, problem))
            offset = start + length
            ends.append(offset)
            continue
        if _is_torn_tail(data, offset, framing):
            return Scan(values, ends, offset, len(data) - offset, framing, None)
        return Scan(values, ends, offset, 0, framing, Damage(offset, problem))
    return Scan(values, ends, offset, 0, framing, None)


def _problem(data: bytes, offset: int, framing: Framing) -> str | None:
    header = framing.header
    if offset + header.size > len(data):
        return "a frame header cut short"
    fields = header.unpack_from(data, offset)
    length, crc = fields[0], fields[1]
    if framing.checked_header and zlib.crc32(data[offset : offset + 8]) != fields[2]:
        return "a frame header with a wrong checksum"
    if length == 0:
        return "an empty frame"  # a MessagePack value is at least one byte
    start = offset + header.size
    if length > MAX_FRAME or start + length > len(data):
        return f"a frame of {length} bytes running past the end of the file"
    if zlib.crc32(data[start : start + length]) != crc:
        return "a frame with a wrong checksum"
    return None


def _is_torn_tail(data: bytes, offset: int, framing: Framing) -> bool:
    header = framing.header
    if offset + header.size > len(data) or not data[offset:].strip(b"\0"):
        return True  # the header cut short, or zero fill
    fields = header.unpack_from(data, offset)
    if framing.checked_header and zlib.crc32(data[offset : offset + 8]) != fields[2]:
        return False  # a damaged header: its length says nothing
    length: int = fields[0]
    return length <= MAX_FRAME and offset + header.size + length >= len(data)
