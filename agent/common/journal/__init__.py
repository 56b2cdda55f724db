"""The journal engine both durable stores run on (the agent's state, the embedded broker's).

    frames.py      the frame format, the torn-tail rule, the old formats still read
    appendfile.py  appends that are whole or cut back, durable when asked (fault-injectable)
    directory.py   snapshot + journal generations, the lock, recovery at start
    check.py       `store check` / `--cut`: report damage, and the explicit repair
    reader.py      a state directory read without writing (beside its owner, or instead of it)

What stays with each store is what differs: its records and state, and *when* a group commit
is written (the agent's writer thread batches commits with callbacks; the broker's writer task
batches records that an acknowledgement may cancel). Both write a batch as one frame through
`JournalDirectory.append` and acknowledge nothing before it returns.
"""

from .appendfile import OS, AppendFile, FileOps
from .check import FileReport, check, cut_damage, damaged, describe
from .directory import SNAPSHOT_MAGIC, Cut, JournalDirectory, Layout, Recovery, read_snapshot, snapshot_bytes
from .frames import CURRENT, LEGACY_AGENT, LEGACY_BROKER, MAGIC, Framing, Scan, frame, scan
from .reader import Reading, lock_held, read_directory

__all__ = [
    "CURRENT",
    "LEGACY_AGENT",
    "LEGACY_BROKER",
    "MAGIC",
    "OS",
    "SNAPSHOT_MAGIC",
    "AppendFile",
    "Cut",
    "FileOps",
    "FileReport",
    "Framing",
    "JournalDirectory",
    "Layout",
    "Reading",
    "Recovery",
    "Scan",
    "check",
    "cut_damage",
    "damaged",
    "describe",
    "frame",
    "lock_held",
    "read_directory",
    "read_snapshot",
    "scan",
    "snapshot_bytes",
]
