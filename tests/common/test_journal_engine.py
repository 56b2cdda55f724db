"""The journal engine under fault injection: crashes at every byte, short writes, a full disk,
failing syncs, bit flips, interrupted generation switches, and the old formats.

Real files throughout; the faults come from the kernel (RLIMIT_FSIZE, in a process of its own)
or from a `FileOps` that fails the way the kernel would (ENOSPC, EIO)."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.common.errors import StoreCorrupt, StoreLocked, StoreWriteFailed
from agent.common.journal import (
    LEGACY_AGENT,
    MAGIC,
    FileOps,
    JournalDirectory,
    Layout,
    check,
    cut_damage,
    damaged,
    frame,
    scan,
)
from agent.common.journal.frames import legacy_frame
from tests.support.faults import InjectedFaults


def _legacy_snapshot(data: bytes) -> tuple[bytes, int]:
    raise ValueError("no old snapshots in these tests")


LAYOUT = Layout(
    owner="test store",
    snapshot_name="snapshot",
    lock_name="LOCK",
    legacy_framing=LEGACY_AGENT,
    legacy_snapshot=_legacy_snapshot,
    check_command=lambda directory: f"check {directory}",
)


def _open(directory: Path, ops: FileOps | None = None) -> tuple[JournalDirectory, list[object]]:
    journal = JournalDirectory(directory, LAYOUT, ops=ops) if ops else JournalDirectory(directory, LAYOUT)
    recovery = journal.open()
    if recovery.needs_switch:
        journal.switch(b"empty")
    return journal, recovery.batches


def _batch(n: int) -> list[object]:
    """A batch as a store writes one: several records, sizes that vary."""
    return [["set", f"k/{n}/{j}", b"v" * (n * 7 % 50)] for j in range(1 + n % 3)]


def _write(directory: Path, count: int) -> list[int]:
    """`count` synced batches; the journal's size after each (the moment its callback may run)."""
    journal, _ = _open(directory)
    ends = []
    for n in range(count):
        journal.append(_batch(n), sync=True)
        ends.append(journal.journal_bytes)
    journal.close()
    return ends


def _journal_file(directory: Path) -> Path:
    [path] = directory.glob("journal.*.log")
    return path


# -- crashes ------------------------------------------------------------------------------------


def test_a_crash_at_every_byte_of_the_last_frames_leaves_a_prefix_with_every_durable_batch(
    tmp_path: Path,
) -> None:
    """Cut a copy of the journal at every byte offset of its last four frames (what a crash in
    the middle of writing them can leave) and reopen: the batches are exactly those whose frame
    ended before the cut, in order; every batch whose append had returned by then (its durability
    callback could have run) is among them; and a second start finds nothing more to cut."""
    live = tmp_path / "live"
    ends = _write(live, 12)
    size = ends[-1]
    for cut in range(ends[-5], size + 1):
        crashed = tmp_path / f"cut-{cut}"
        shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("LOCK"))
        with open(_journal_file(crashed), "r+b") as f:
            f.truncate(cut)
        journal, batches = _open(crashed)
        durable = sum(1 for end in ends if end <= cut)
        assert batches == [_batch(n) for n in range(durable)], f"cut at {cut}"
        journal.append(_batch(99), sync=True)  # appends go on after the cut
        journal.close()
        journal, batches = _open(crashed)
        assert batches == [*(_batch(n) for n in range(durable)), _batch(99)], f"cut at {cut}"
        journal.close()
        shutil.rmtree(crashed)


def test_zero_fill_after_the_last_frame_is_a_crash(tmp_path: Path) -> None:
    ends = _write(tmp_path, 3)
    with open(_journal_file(tmp_path), "ab") as f:
        f.write(b"\0" * 5000)  # the file system extended the file but wrote no data
    journal, batches = _open(tmp_path)
    assert len(batches) == 3 and _journal_file(tmp_path).stat().st_size == ends[-1]
    journal.close()


# -- damage: a bit flip anywhere in a middle frame ------------------------------------------------


def test_a_bit_flip_anywhere_in_a_middle_frame_is_refused_by_name(tmp_path: Path) -> None:
    """Every byte of the fourth of eight frames, header included: the start is refused with the
    file, the offset and what to do, and the journal is left exactly as it was."""
    live = tmp_path / "live"
    ends = _write(live, 8)
    start, end = ends[2], ends[3]
    for offset in range(start, end):
        damaged_dir = tmp_path / f"flip-{offset}"
        shutil.copytree(live, damaged_dir, ignore=shutil.ignore_patterns("LOCK"))
        path = _journal_file(damaged_dir)
        data = bytearray(path.read_bytes())
        data[offset] ^= 0x10
        path.write_bytes(bytes(data))
        with pytest.raises(StoreCorrupt) as refused:
            JournalDirectory(damaged_dir, LAYOUT).open()
        message = str(refused.value)
        assert f"{path}: " in message and f"at byte {start} of {ends[-1]}" in message, message
        assert "the 3 frames before it are intact" in message and f"check {damaged_dir} --cut" in message
        assert path.read_bytes() == bytes(data)  # nothing cut, nothing dropped
        with pytest.raises(StoreCorrupt):  # again, not StoreLocked: the refused start let the lock go
            JournalDirectory(damaged_dir, LAYOUT).open()
        shutil.rmtree(damaged_dir)


def test_check_reports_the_damage_and_cut_keeps_the_frames_before_it(tmp_path: Path) -> None:
    ends = _write(tmp_path, 6)
    path = _journal_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[ends[1] + 14] ^= 0x01  # in the payload of the third frame
    path.write_bytes(bytes(data))
    reports = check(tmp_path, LAYOUT)
    assert damaged(reports)
    [journal_report] = [r for r in reports if r.path == path]
    assert journal_report.state == "damaged" and journal_report.frames == 2
    assert journal_report.cut_at == ends[1] and "wrong checksum" in journal_report.detail
    holder = JournalDirectory(tmp_path, LAYOUT)
    holder.lock()
    with pytest.raises(StoreLocked):  # never beside the running owner
        cut_damage(tmp_path, LAYOUT, reports)
    holder.close()
    [done] = cut_damage(tmp_path, LAYOUT, reports)
    assert f"cut at byte {ends[1]}" in done
    [copy] = tmp_path.glob("journal.*.log.damaged-*")
    assert copy.read_bytes() == bytes(data)
    assert not damaged(check(tmp_path, LAYOUT))
    journal, batches = _open(tmp_path)
    assert batches == [_batch(0), _batch(1)]
    journal.close()


# -- failed writes --------------------------------------------------------------------------------


def test_short_writes_are_followed_until_every_byte_is_out(tmp_path: Path) -> None:
    ops = InjectedFaults(chunk=7, dsync=False)
    journal, _ = _open(tmp_path, ops)
    for n in range(20):
        journal.append(_batch(n), sync=True)
    journal.close()
    assert ops.short_writes > 20
    journal, batches = _open(tmp_path)
    assert batches == [_batch(n) for n in range(20)]
    journal.close()


def test_a_full_disk_mid_frame_cuts_the_file_back_and_appends_go_on_after_space_returns(
    tmp_path: Path,
) -> None:
    ops = InjectedFaults(chunk=16, dsync=False)
    journal, _ = _open(tmp_path, ops)
    acknowledged = []
    for n in range(5):
        journal.append(_batch(n), sync=True)
        acknowledged.append(n)
    size = journal.journal_bytes
    ops.space = 10  # the next frame gets 10 bytes onto the disk, then ENOSPC
    with pytest.raises(StoreWriteFailed, match=r"No space left on device.*cut back to its last whole frame"):
        journal.append(_batch(5), sync=True)
    assert _journal_file(tmp_path).stat().st_size == size == journal.journal_bytes
    ops.space = 1 << 50  # space again
    for n in range(6, 9):
        journal.append(_batch(n), sync=True)
        acknowledged.append(n)
    journal.close()
    journal, batches = _open(tmp_path)
    assert batches == [_batch(n) for n in acknowledged]  # every acknowledged batch, 5 never was
    journal.close()


def test_a_failed_fdatasync_cuts_the_frame_back(tmp_path: Path) -> None:
    ops = InjectedFaults()
    journal, _ = _open(tmp_path, ops)
    journal.append(_batch(0), sync=True)
    ops.dsync = False  # write, then fdatasync: which fails once
    ops.fail["fdatasync"] = errno.EIO
    with pytest.raises(StoreWriteFailed, match="Input/output error") as failed:
        journal.append(_batch(1), sync=True)
    assert not failed.value.broken
    journal.append(_batch(2), sync=True)
    journal.close()
    journal, batches = _open(tmp_path)
    assert batches == [_batch(0), _batch(2)]
    journal.close()


def test_a_journal_that_cannot_be_cut_back_refuses_every_append(tmp_path: Path) -> None:
    ops = InjectedFaults(dsync=False)
    journal, _ = _open(tmp_path, ops)
    journal.append(_batch(0), sync=True)
    ops.fail["fdatasync"], ops.persistent = errno.EIO, True  # the append's, and the one after cutting back
    with pytest.raises(StoreWriteFailed, match=r"cutting it back to byte .* failed too") as failed:
        journal.append(_batch(1), sync=True)
    assert failed.value.broken
    with pytest.raises(StoreWriteFailed, match="refuses appends"):
        journal.append(_batch(2), sync=True)
    journal.close()


#: RLIMIT_FSIZE in a process of its own: the kernel writes what fits (a short write), then EFBIG.
_UNDER_A_FILE_SIZE_LIMIT = """
import json, resource, sys
from pathlib import Path
from agent.common.errors import StoreWriteFailed
from agent.common.journal import JournalDirectory
from tests.common.test_journal_engine import LAYOUT, _batch

journal = JournalDirectory(Path(sys.argv[1]), LAYOUT)
if journal.open().needs_switch:
    journal.switch(b"empty")
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), hard))
acknowledged, failures = [], []
for n in range(400):
    if n == 300:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
    try:
        journal.append(_batch(n), sync=True)
    except StoreWriteFailed as exc:
        failures.append(str(exc))
        continue
    acknowledged.append(n)
print(json.dumps({"acknowledged": acknowledged, "failures": failures}))
"""


def test_a_file_size_limit_never_leaves_a_partial_frame_before_later_ones(tmp_path: Path) -> None:
    """The kernel's own short write: under RLIMIT_FSIZE the frame that crosses the limit is
    written in part, then EFBIG. The journal is cut back, so when appends work again (the limit
    lifted) nothing follows partial bytes, and every acknowledged batch is there after a start.
    (Before the engine, the partial frame was acknowledged, and cut at the next start together
    with every later, fully synced frame.)"""
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_A_FILE_SIZE_LIMIT, str(tmp_path), str(4096)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["failures"] and all("File too large" in f for f in report["failures"])
    assert report["acknowledged"][-1] == 399  # appends worked again
    journal, batches = _open(tmp_path)
    assert batches == [_batch(n) for n in report["acknowledged"]]
    journal.close()


# -- generations ------------------------------------------------------------------------------------


def test_a_switch_that_fails_before_its_rename_leaves_the_generation_as_it_was(tmp_path: Path) -> None:
    """A full disk while the new journal is made: generation G stands, its journal takes appends,
    no file of G+1 is left behind, and the next start reads G whole."""
    ops = InjectedFaults()
    journal, _ = _open(tmp_path, ops)
    journal.append(_batch(0), sync=True)
    generation = journal.generation
    ops.space = 0
    with pytest.raises(StoreWriteFailed, match="No space left"):
        journal.switch(b"next")
    ops.space = 1 << 50
    assert journal.generation == generation
    assert sorted(p.name for p in tmp_path.glob("journal.*")) == [f"journal.{generation}.log"]
    journal.append(_batch(1), sync=True)
    journal.close()
    journal, batches = _open(tmp_path)
    assert journal.generation == generation and batches == [_batch(0), _batch(1)]
    journal.close()


def test_a_switch_interrupted_at_each_step_recovers_one_whole_generation(tmp_path: Path) -> None:
    """Crash images of a switch from generation G: (1) journal G+1 made, snapshot G+1 not yet
    renamed in; (2) renamed in, journal G not yet removed. Each reopens to one whole generation."""
    journal, _ = _open(tmp_path)
    journal.append(_batch(0), sync=True)
    generation = journal.generation
    journal.close()
    # (1): the new journal exists (magic only), the snapshot is still G
    (tmp_path / f"journal.{generation + 1}.log").write_bytes(MAGIC)
    journal, batches = _open(tmp_path)
    assert journal.generation == generation and batches == [_batch(0)]
    assert not (tmp_path / f"journal.{generation + 1}.log").exists()
    old = journal.journal_path.read_bytes()
    journal.switch(b"state with batch 0")
    journal.close()
    # (2): the old journal was not removed yet
    (tmp_path / f"journal.{generation}.log").write_bytes(old)
    journal = JournalDirectory(tmp_path, LAYOUT)
    recovery = journal.open()
    assert recovery.generation == generation + 1 and recovery.snapshot == b"state with batch 0"
    assert recovery.batches == [] and not (tmp_path / f"journal.{generation}.log").exists()
    journal.close()


def test_a_journal_with_frames_newer_than_the_snapshot_is_refused(tmp_path: Path) -> None:
    journal, _ = _open(tmp_path)
    journal.close()
    (tmp_path / f"journal.{journal.generation + 1}.log").write_bytes(MAGIC + frame(_batch(0)))
    with pytest.raises(StoreCorrupt, match="newer than snapshot"):
        JournalDirectory(tmp_path, LAYOUT).open()


def test_the_switch_syncs_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new journal's name and the snapshot's rename must be durable before the old journal
    goes: the directory is fsynced after each (the broker did not do it when it made a journal)."""
    import agent.common.journal.directory as directory_module

    synced: list[str] = []
    real = directory_module.fsync_dir
    monkeypatch.setattr(directory_module, "fsync_dir", lambda d: (synced.append("dir"), real(d)))
    journal, _ = _open(tmp_path)
    synced.clear()
    journal.switch(b"next")
    journal.close()
    assert synced == ["dir", "dir"]  # the new journal's entry, then the old one's removal


# -- old formats ------------------------------------------------------------------------------------


def test_a_journal_of_the_old_framing_is_read_and_the_owner_asked_to_switch(tmp_path: Path) -> None:
    def old_snapshot(data: bytes) -> tuple[bytes, int]:
        return data, 3

    layout = Layout("test store", "snapshot", "LOCK", LEGACY_AGENT, old_snapshot, lambda d: "check")
    (tmp_path / "snapshot").write_bytes(b"old state")
    (tmp_path / "journal.3.log").write_bytes(
        b"".join(legacy_frame(_batch(n), LEGACY_AGENT) for n in range(3))
    )
    journal = JournalDirectory(tmp_path, layout)
    recovery = journal.open()
    assert recovery.snapshot == b"old state" and recovery.generation == 3 and recovery.needs_switch
    assert recovery.batches == [_batch(n) for n in range(3)]
    journal.switch(b"new state")
    journal.append(_batch(3), sync=True)
    journal.close()
    assert scan(_journal_file(tmp_path).read_bytes()).framing.magic == MAGIC
    assert (tmp_path / "snapshot").read_bytes().startswith(b"EDGESNP2")
