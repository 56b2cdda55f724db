"""Framed, checksummed records: the on-disk unit of the journal and the history partitions.

A record is `u32 length | u32 crc32(payload) | payload` (little endian), the payload one
MessagePack value. A file of records is read front to back; what may be wrong with it after a
crash is only its end (a record cut short, or zeros where the file system had extended the file
but not yet written it), and that tail is cut off. Damage anywhere else cannot come from a crash:
reading stops with `StoreCorrupt` naming the file and the offset, and nothing is silently dropped.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from ..errors import StoreCorrupt

HEADER = struct.Struct("<II")
MAX_RECORD = 1 << 30


def frame(value: object) -> bytes:
    payload: bytes = msgpack.packb(value, use_bin_type=True)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def unpack(payload: bytes) -> Any:
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)


class Scan(NamedTuple):
    values: list[Any]
    valid_length: int  # bytes of whole, verified records from the start
    torn_bytes: int  # bytes after them that a crash left (to be cut off)


def scan(path: Path) -> Scan:
    """Every record of `path`; a torn tail is reported, other damage raises `StoreCorrupt`."""
    data = path.read_bytes()
    values: list[Any] = []
    offset = 0
    while offset < len(data):
        problem = _record_problem(data, offset)
        if problem is not None:
            if _is_tail(data, offset):
                return Scan(values, offset, len(data) - offset)
            raise StoreCorrupt(f"{path}: {problem} at byte {offset} of {len(data)}, with data after it")
        length, _ = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        try:
            values.append(unpack(data[start : start + length]))
        except (ValueError, msgpack.ExtraData) as exc:  # checksum right, content wrong: not a crash
            raise StoreCorrupt(f"{path}: record at byte {offset} does not decode: {exc}") from None
        offset = start + length
    return Scan(values, offset, 0)


def _record_problem(data: bytes, offset: int) -> str | None:
    if offset + HEADER.size > len(data):
        return "a record header cut short"
    length, crc = HEADER.unpack_from(data, offset)
    start = offset + HEADER.size
    if length == 0:
        return "an empty record"  # a MessagePack value is at least one byte: this is zero fill
    if length > MAX_RECORD or start + length > len(data):
        return f"a record of {length} bytes running past the end"
    if zlib.crc32(data[start : start + length]) != crc:
        return "a record with a wrong checksum"
    return None


def _is_tail(data: bytes, offset: int) -> bool:
    """True when the bad record at `offset` is what a crash leaves: the last write, or zero fill."""
    if offset + HEADER.size > len(data):
        return True
    length, _ = HEADER.unpack_from(data, offset)
    end = offset + HEADER.size + length
    if length <= MAX_RECORD and end >= len(data):
        return True  # the last record, cut short or not fully on disk
    return not data[offset:].strip(b"\0")  # the file system extended the file but wrote no data


def iter_values(path: Path) -> Iterator[Any]:
    """The values of a file of records (history reading: a torn tail is simply not there yet)."""
    yield from scan(path).values
