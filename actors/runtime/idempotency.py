"""Repeated idempotency keys return the first result and deliver nothing again.

In memory, per router, within a window. A key whose first request is still
running makes the repeat wait for it rather than send in parallel. Only
successful, real (not dry-run) results are kept: after a failure nothing was
delivered, so a retry with the same key must be allowed to deliver.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

from actors.messages import InvokeResult


class IdempotencyCache:
    def __init__(self, window_s: float, clock: Callable[[], float], max_entries: int = 100_000):
        self.window_s = window_s
        self._clock = clock
        self._max = max_entries
        self._done: OrderedDict[str, tuple[float, InvokeResult]] = OrderedDict()
        self._running: dict[str, asyncio.Future[InvokeResult]] = {}

    def lookup(self, key: str) -> InvokeResult | asyncio.Future[InvokeResult] | None:
        self._expire()
        if key in self._done:
            return self._done[key][1]
        return self._running.get(key)

    def begin(self, key: str) -> None:
        self._running[key] = asyncio.get_running_loop().create_future()

    def finish(self, key: str, result: InvokeResult) -> None:
        future = self._running.pop(key, None)
        if result.ok and not result.dry_run:
            self._done[key] = (self._clock(), result)
            while len(self._done) > self._max:
                self._done.popitem(last=False)
        if future is not None and not future.done():
            future.set_result(result)

    def _expire(self) -> None:
        horizon = self._clock() - self.window_s
        while self._done:
            key, (stored_at, _) = next(iter(self._done.items()))
            if stored_at >= horizon:
                break
            self._done.popitem(last=False)
