"""The registry's storage: atomic, private, one write per batch, nothing written when a batch fails."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from provisioning import operations as ops
from provisioning.errors import FleetCorrupt, FleetLocked
from provisioning.fleet import Fleet, fleet_lock, open_fleet
from provisioning.registry import AtomicJSONStorage, Registry


def test_batch_writes_once_and_not_at_all_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "db.json"
    storage = AtomicJSONStorage(str(path))
    writes: list[object] = []
    real_flush = storage._flush

    def counting(data: dict[str, dict[str, object]]) -> None:
        writes.append(data)
        real_flush(data)

    monkeypatch.setattr(storage, "_flush", counting)
    with storage.batch():
        storage.write({"t": {"1": {"a": 1}}})
        assert storage.read() == {"t": {"1": {"a": 1}}}
        storage.write({"t": {"1": {"a": 2}}})
    assert len(writes) == 1
    before = path.read_bytes()
    with pytest.raises(RuntimeError), storage.batch():
        storage.write({"t": {}})
        raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert path.stat().st_mode & 0o777 == 0o600


def test_bulk_add_is_one_registry_write(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    flushes: list[int] = []
    real = AtomicJSONStorage._flush

    def counting(self: AtomicJSONStorage, data: dict[str, dict[str, object]]) -> None:
        flushes.append(len(data.get("identities", {})))
        real(self, data)

    monkeypatch.setattr(AtomicJSONStorage, "_flush", counting)
    ops.add_identities(fleet, ops.AddRequest(kind="device", names=[f"d{i}" for i in range(50)]), time.time())
    assert flushes == [50]


def test_replacing_keeps_one_document_per_name(fleet: Fleet) -> None:
    now = time.time()
    ops.add_identities(fleet, ops.AddRequest(kind="device", names=["a", "b"]), now)
    ops.add_identities(fleet, ops.AddRequest(kind="agent", names=["b", "c"], force=True), now)
    with Registry(fleet.registry_path) as registry:
        assert [(i.name, i.kind, i.gen) for i in registry.all()] == [
            ("a", "device", 1),
            ("b", "agent", 2),
            ("c", "agent", 1),
        ]


def test_damaged_registry_is_reported(fleet: Fleet) -> None:
    fleet.registry_path.write_text("{not json")
    with pytest.raises(FleetCorrupt, match="not valid JSON"):
        ops.list_identities(fleet)


def test_a_second_writer_waits_for_the_lock_then_gives_up(fleet: Fleet) -> None:
    with fleet_lock(fleet, exclusive=True):
        locked = pytest.raises(FleetLocked, match="locked by another edge-provision")
        with locked, fleet_lock(fleet, exclusive=True, timeout=0.2):
            pass
        with pytest.raises(FleetLocked), fleet_lock(fleet, exclusive=False, timeout=0.1):
            pass
    with fleet_lock(fleet, exclusive=False), fleet_lock(fleet, exclusive=False, timeout=0.1):
        pass  # readers share it


def test_a_fleet_without_its_registry_is_refused(fleet: Fleet) -> None:
    fleet.registry_path.unlink()
    with pytest.raises(FleetCorrupt, match="missing"):
        open_fleet(fleet.root)
