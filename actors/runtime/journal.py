"""A provider actor's delivery journal: what it knows of each keyed send.

Before the adapter is called for a keyed, non-idempotent request, the entry
says `started`; after, `delivered` (with the value), `failed` (the provider
certainly did not act) or `unknown` (it may have). An entry left `started`
by a process that died, or `unknown`, is settled by `settle()`: the
adapter's `reconcile()` where the provider can be asked, a resend where the
provider itself drops duplicates, and otherwise it stays unknown for an
operator. Keys being sent right now by this process are in `inflight`, so a
second request for the same key waits for the first instead of sending.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from actors.durable import JournalEntry, StateStore

class DeliveryJournal:
    def __init__(self, capability: str, provider: str, store: Callable[[], StateStore], clock: Callable[[], float]):
        self.capability = capability
        self.provider = provider
        self._store = store
        self._clock = clock
        self.incarnation = uuid.uuid4().hex  # this process: entries of another one were left by a crash
        self.inflight: dict[str, asyncio.Future[Any]] = {}

    def get(self, key: str) -> JournalEntry | None:
        return self._store().journal_get(self.capability, self.provider, key)

    def get_many(self, keys: list[str]) -> dict[str, JournalEntry]:
        """This provider's entries for `keys`, in one read."""
        found = self._store().journal_find_many(self.capability, keys, provider=self.provider)
        return {key: entries[0] for key, entries in found.items()}

    def write_many(self, rows: list[tuple[Any, str, str, Any, str | None]]) -> None:
        """(ctx, method, state, value, error) rows, in one transaction."""
        now = self._clock()
        self._store().journal_put_many([JournalEntry(
            capability=self.capability, provider=self.provider, key=ctx.idempotency_key, request_id=ctx.request_id,
            method=method, state=state, incarnation=self.incarnation, updated_at=now, value=value, error=error)
            for ctx, method, state, value, error in rows])

    def write(self, key: str, request_id: str, method: str, state: str, value: Any = None,
              error: str | None = None) -> None:
        self._store().journal_put(JournalEntry(
            capability=self.capability, provider=self.provider, key=key, request_id=request_id, method=method,
            state=state, incarnation=self.incarnation, updated_at=self._clock(), value=value, error=error))
