"""Repeated idempotency keys return the first result and deliver nothing again.

Two layers. In memory: keys whose first request is still running in this
router, so a concurrent repeat waits for it rather than sending in parallel.
Durable (actors.durable): the first result of each key, kept for the window,
so repeats are answered across restarts of the router or the whole gateway.

What is kept: a delivered result, a queued one (the outbox holds the
request) and one whose outcome is unknown (parked: sending it again could
deliver twice). Not kept: a failure that delivered nothing, which a retry
with the same key must be allowed to deliver; and dry runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from actors.durable import StateStore
from actors.messages import InvokeResult
from actors.runtime.coalesce import batching

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(InvokeResult).decode


def worth_keeping(result: InvokeResult) -> bool:
    return not result.dry_run and (result.ok or result.outbox_id is not None)


class IdempotencyRecords:
    def __init__(self, capability: str, window_s: float, clock: Callable[[], float], store: Callable[[], StateStore],
                 expire_every: int = 1000):
        self.capability = capability
        self.window_s = window_s
        self._clock = clock
        self._store = store
        self._running: dict[str, asyncio.Future[InvokeResult]] = {}
        self._writes = 0
        self._expire_every = expire_every
        self._unwritten: list[tuple[str, bytes, float]] = []

    def running(self, key: str) -> asyncio.Future[InvokeResult] | None:
        return self._running.get(key)

    def stored(self, key: str) -> InvokeResult | None:
        blob = self._store().get_result(self.capability, key, self._clock() - self.window_s)
        return None if blob is None else _decode(blob)

    def begin(self, key: str) -> None:
        self._running[key] = asyncio.get_running_loop().create_future()

    def finish(self, key: str, result: InvokeResult) -> None:
        future = self._running.pop(key, None)
        if worth_keeping(result):
            self.keep(key, result)
        if future is not None and not future.done():
            future.set_result(result)

    def keep(self, key: str, result: InvokeResult) -> None:
        now = self._clock()
        if batching.get():  # part of an invoke_many: written with the rest of the batch, before it answers
            self._unwritten.append((key, _encode(result), now))
            return
        self._store().put_result(self.capability, key, _encode(result), now)
        self._count_write(now)

    def write_batch(self) -> None:
        """The results an invoke_many kept, in one transaction."""
        rows, self._unwritten = self._unwritten, []
        if rows:
            self._store().put_results_many(self.capability, rows)
            self._count_write(rows[-1][2], len(rows))

    def _count_write(self, now: float, n: int = 1) -> None:
        before = self._writes
        self._writes += n
        if before // self._expire_every != self._writes // self._expire_every:
            self._store().expire_results(now - self.window_s)
