"""`within(awaitable, seconds)`: the awaitable's result, or `asyncio.TimeoutError` after `seconds`.

On Python 3.11 and later through `asyncio.timeout` (no task made per call: `wait_for` of a
coroutine makes one, which shows in a request's cost); on 3.10 through `asyncio.wait_for`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - Python 3.10
