"""Running the broker inside another program: tests, `make run`, the agent's own test suite.

    async with EmbeddedBroker(settings) as broker:      # in a running event loop
        ...connect to 127.0.0.1:broker.port...

    with EmbeddedBroker(settings).start_in_thread() as broker:   # from synchronous code
        ...broker.port...

A listener configured with port 0 gets a free port from the kernel; `port`, `tls_port` and
`ws_port` say which, once started. `start()` returns only when every listener accepts
connections and the store has been restored; `stop()` returns when the store is closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import warnings
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from amqtt.errors import BrokerError as AmqttBrokerError

from .config import BrokerSettings, settings_from
from .core import EdgeBroker
from .errors import BrokerError, ConfigError, StartError
from .store import MemoryStore, Store

_T = TypeVar("_T")


class EmbeddedBroker:
    """One broker instance: start, query, reload, stop. Not restartable: make a new one."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self._broker: EdgeBroker | None = None

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> EmbeddedBroker:
        """From a dict shaped like the TOML file, e.g. `{"listeners.tcp.port": 0, ...}`."""
        return cls(settings_from(doc))

    # -- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._broker is not None:
            raise StartError("this broker was already started; make a new EmbeddedBroker")
        persistence = self.settings.persistence
        store: MemoryStore = (
            Store(
                persistence.data_dir,
                fsync=persistence.fsync,
                compact_bytes=persistence.compact_bytes,
                ack_wait_s=persistence.ack_wait_ms / 1000,
            )
            if persistence.data_dir is not None
            else MemoryStore()
        )
        broker = EdgeBroker(self.settings, store)
        try:
            await broker.start()
        except AmqttBrokerError as exc:
            await store.close()
            cause = exc.__cause__
            if isinstance(cause, (BrokerError, ConfigError)):
                raise cause from None
            raise StartError(f"the broker did not start: {cause or exc}") from None
        self._broker = broker

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None and broker.transitions.state == "started":
            await broker.shutdown()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def start_in_thread(self, timeout: float = 30.0) -> BrokerThread:
        """Run in a thread of its own with its own event loop; returns when it accepts clients."""
        thread = BrokerThread(self)
        thread.start(timeout)
        return thread

    # -- what it is doing -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._broker is not None

    @property
    def broker(self) -> EdgeBroker:
        if self._broker is None:
            raise StartError("the broker is not running")
        return self._broker

    def address(self, listener: str) -> tuple[str, int]:
        """(host, port) a listener (`tcp`, `tls`, `ws`) is bound to."""
        try:
            return self.broker.bound[listener]
        except KeyError:
            raise StartError(f"listener {listener!r} is not enabled") from None

    @property
    def port(self) -> int:
        return self.address("tcp")[1]

    @property
    def tls_port(self) -> int:
        return self.address("tls")[1]

    @property
    def ws_port(self) -> int:
        return self.address("ws")[1]

    def stats(self) -> dict[str, int]:
        """Counters for tests, benchmarks and logs: what the broker holds, what it did, and what
        its bounds refused (broker/limits.py)."""
        broker = self.broker
        router = broker.router
        outboxes = router.outboxes.values()
        connected = sum(1 for s, _ in broker.sessions.values() if s.transitions.is_connected())
        return {
            "connected": connected,
            "sessions": len(broker.sessions),
            "subscriptions": len(router.index),
            "retained": len(router.retained),
            "retained_bytes": router.retained.bytes,
            "queued": sum(len(outbox) for outbox in outboxes),
            "queued_bytes": sum(outbox.queued_bytes for outbox in outboxes),
            "received": router.stats.received,
            "routed": router.stats.routed,
            "refused_publish": router.stats.refused_publish,
            "store_write_failures": broker.store.stats.failures,
            **dataclasses.asdict(router.events.counters),
        }

    def reload(self) -> int:
        """Re-read provisioning's files (what SIGHUP does); returns how many clients were disconnected."""
        return self.broker.reload_credentials()


class BrokerThread:
    """An `EmbeddedBroker` running on an event loop in a daemon thread."""

    def __init__(self, embedded: EmbeddedBroker) -> None:
        self.embedded = embedded
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="edge-broker", daemon=True)

    def start(self, timeout: float) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise StartError(f"the broker did not start within {timeout} s")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error

    def _main(self) -> None:
        asyncio.run(self._run())
        # A client still in its TLS handshake when the broker stops (a device reconnecting at that
        # moment) is not amqtt's yet, and Python 3.11's asyncio.Server cannot close its clients
        # (close_clients came in 3.13): its transport outlives the loop and warns when collected.
        # Collected here, at the thread's end, where that warning tells nothing about this process.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.embedded.start()
        except BaseException as exc:  # handed to the thread that called start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.embedded.stop()

    def call(self, function: Callable[[], Awaitable[_T]], timeout: float = 30.0) -> _T:
        """Run a coroutine function on the broker's loop and return its result."""
        if self._loop is None:
            raise StartError("the broker thread is not running")

        async def run() -> _T:
            return await function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> BrokerThread:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.embedded.port

    @property
    def tls_port(self) -> int:
        return self.embedded.tls_port

    @property
    def ws_port(self) -> int:
        return self.embedded.ws_port

    def stats(self) -> dict[str, int]:
        return self.call(self._stats)

    async def _stats(self) -> dict[str, int]:
        return self.embedded.stats()

    def reload(self) -> int:
        return self.call(self._reload)

    async def _reload(self) -> int:
        return self.embedded.reload()
