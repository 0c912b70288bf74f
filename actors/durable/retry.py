"""Waiting out a store that does not answer, within a deadline.

A request that needs the store (to claim its key, to journal a send) waits
for it rather than failing at the first refused connection: a PostgreSQL
restart takes a few seconds, a SQLite write lock a few milliseconds. It
tries again with jittered, doubling pauses until its deadline would pass,
then gives up with the store's own error (`StoreUnavailable`), which the
router reports as `store_unavailable`: nothing was sent.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from actors.durable.store import StoreUnavailable

T = TypeVar("T")

FIRST_PAUSE_S = 0.05
LONGEST_PAUSE_S = 1.0


async def within(deadline: float, call: Callable[[], Awaitable[T]], *,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> T:
    """`await call()`, tried again while it raises StoreUnavailable and the
    monotonic `deadline` leaves time for another try."""
    pause = FIRST_PAUSE_S
    rng = rng or random
    while True:
        try:
            return await call()
        except StoreUnavailable:
            wait = pause * rng.uniform(0.5, 1.0)
            if clock() + wait >= deadline:
                raise
            await sleep(wait)
            pause = min(pause * 2, LONGEST_PAUSE_S)
