"""The registry of identities: TinyDB on a storage that writes atomically, once per command.

TinyDB's stock JSONStorage rewrites the file in place on every write (not atomic: a crash
mid-write corrupts it). `AtomicJSONStorage` writes a temporary file, fsyncs it and renames it
over `registry.json` (0600: it holds password hashes); inside `Registry.batch()` it holds every
write in memory and commits once at the end, so `add --count 1000` is one write and a command
that fails changes nothing. The registry is each command's commit point: files are written
first, the registry last.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from agent.common.fileio import PRIVATE, write_atomic

from .apiclients import ApiClient
from .errors import FleetCorrupt, UnknownIdentity
from .records import Identity

TABLE = "identities"
API_TABLE = "api_clients"
Data = dict[str, dict[str, Any]]


class AtomicJSONStorage(Storage):
    """JSON storage with atomic writes and an optional write-once batch."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._pending: Data | None = None
        self._batching = False

    def read(self) -> Data | None:
        if self._pending is not None:
            return self._pending
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FleetCorrupt(f"cannot read {self.path}: {exc.strerror}") from None
        if not text.strip():
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FleetCorrupt(f"{self.path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise FleetCorrupt(f"{self.path} is not a TinyDB database")
        return data

    def write(self, data: Data) -> None:
        if self._batching:
            self._pending = data
        else:
            self._flush(data)

    def _flush(self, data: Data) -> None:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
        write_atomic(self.path, text + "\n", PRIVATE)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Collect every write of the block; commit once if the block succeeds, never if it fails."""
        self._batching, self._pending = True, None
        try:
            yield
            if self._pending is not None:
                self._flush(self._pending)
        finally:
            self._batching, self._pending = False, None

    def close(self) -> None:
        pass


def create_registry(path: Path) -> None:
    """An empty registry file."""
    AtomicJSONStorage(str(path)).write({TABLE: {}})


class Registry:
    """Identities by name, on top of TinyDB."""

    def __init__(self, path: Path) -> None:
        self._db = TinyDB(str(path), storage=AtomicJSONStorage)
        self._table = self._db.table(TABLE, cache_size=0)
        self._api = self._db.table(API_TABLE, cache_size=0)  # absent from registries made before it

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _storage(self) -> AtomicJSONStorage:
        storage = self._db.storage
        assert isinstance(storage, AtomicJSONStorage)
        return storage

    # -- reading -----------------------------------------------------------------------
    def all(self) -> list[Identity]:
        return sorted((Identity.from_doc(dict(doc)) for doc in self._table.all()), key=lambda i: i.name)

    def get(self, name: str) -> Identity | None:
        doc = self._table.get(Query().name == name)
        return None if doc is None else Identity.from_doc(dict(doc))

    def require(self, name: str) -> Identity:
        identity = self.get(name)
        if identity is None:
            raise UnknownIdentity(f"no identity called {name!r} in this fleet (see `edge-provision list`)")
        return identity

    def names(self) -> set[str]:
        """Every name in use: identities and API clients share one namespace (logs name both)."""
        return {str(doc["name"]) for doc in self._table.all()} | {str(doc["name"]) for doc in self._api.all()}

    def api_clients(self) -> list[ApiClient]:
        return sorted((ApiClient.from_doc(dict(doc)) for doc in self._api.all()), key=lambda c: c.name)

    def api_client(self, name: str) -> ApiClient | None:
        doc = self._api.get(Query().name == name)
        return None if doc is None else ApiClient.from_doc(dict(doc))

    def save_api_client(self, client: ApiClient) -> None:
        """Insert or replace (by name), in one atomic write."""
        with self._storage.batch():
            self._api.remove(Query().name == client.name)
            self._api.insert(client.to_doc())

    # -- writing -----------------------------------------------------------------------
    def save(self, identities: Iterable[Identity]) -> None:
        """Insert new identities and replace existing ones (by name), in one atomic write."""
        ids = {str(doc["name"]): doc.doc_id for doc in self._table.all()}
        new: list[dict[str, Any]] = []
        with self._storage.batch():
            for identity in identities:
                doc = identity.to_doc()
                if identity.name in ids:
                    self._table.update(doc, doc_ids=[ids[identity.name]])
                else:
                    new.append(doc)
            if new:
                self._table.insert_multiple(new)
