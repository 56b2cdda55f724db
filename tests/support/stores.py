"""Reading a store as its next start would: open it, take its state, close it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from broker.records import StoreState
from broker.store import Store as BrokerStore


def broker_state(directory: Path) -> StoreState:
    """The embedded broker's durable state in `directory`, as a start restores it."""

    async def load() -> StoreState:
        store = BrokerStore(directory)
        state = await store.open()
        await store.close()
        return state

    return asyncio.run(load())
