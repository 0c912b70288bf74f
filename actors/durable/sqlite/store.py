"""The embedded state store: one SQLite file in WAL mode, on a thread of its
own (connection.py), its tables each kept by a small collaborator: keys
(claims and first results), the journal, the outbox, spend and meters,
secrets and markers. This class composes them behind the StateStore
interface (actors/durable/store.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from actors.durable.batches import in_batches
from actors.durable.event_calls import DeliveryEventCalls
from actors.durable.sqlite.connection import SqliteConnection
from actors.durable.sqlite.events import SqliteEvents
from actors.durable.sqlite.journal import SqliteJournal
from actors.durable.sqlite.keys import SqliteKeys
from actors.durable.sqlite.outbox import SqliteOutbox
from actors.durable.sqlite.shared import SqliteShared
from actors.durable.sqlite.spend import SqliteSpend
from actors.durable.store import (
    Claims,
    JournalEntry,
    KeyClaim,
    KeyRecord,
    OutboxItem,
    OutboxReason,
    SpendDelta,
    SpendRow,
    StoreHealth,
)

__all__ = ["SqliteStore"]


class SqliteStore(DeliveryEventCalls):
    kind = "sqlite"

    def __init__(self, path: str, namespace: str = "default", *, display: str | None = None,
                 synchronous: str = "NORMAL", busy_timeout_s: float = 5.0, clock: Callable[[], float] = time.time):
        self.path = path if path == ":memory:" else str(Path(path).expanduser())
        self.namespace = namespace
        self.url = display or f"sqlite:///{self.path}"
        self._clock = clock
        # Read at each call, not kept: the contract tests move a store's clock to prune "in 500 days".
        self._db = SqliteConnection(self.path, namespace, url=self.url, synchronous=synchronous,
                                    busy_timeout_s=busy_timeout_s, clock=lambda: self._clock())
        self.tracker = self._db.tracker
        self._keys = SqliteKeys(self._db)
        self._outbox = SqliteOutbox(self._db)
        self._spend = SqliteSpend(self._db)
        self._journal = SqliteJournal(self._db, self._spend)
        self._shared = SqliteShared(self._db)
        self._events = SqliteEvents(self._db)

    # keys
    async def claim_keys(self, capability: str, claims: Sequence[KeyClaim], owner: str, lease_s: float,
                         fresh_after: float) -> Claims:
        return await self._keys.claim(capability, claims, owner, lease_s, fresh_after)

    async def get_keys(self, capability: str, keys: Sequence[str]) -> dict[str, KeyRecord]:
        return await self._keys.get(capability, keys)

    async def finish_keys(self, capability: str, owner: str, rows: Sequence[tuple[str, bytes | None, str | None]],
                          now: float) -> None:
        await self._keys.finish(capability, owner, rows, now)

    async def release_claims(self, owner_prefix: str) -> int:
        return await self._keys.release(owner_prefix)

    async def expire_keys(self, before: float) -> int:
        return await self._keys.expire(before)

    # journal
    async def journal_claim(self, entries: Sequence[JournalEntry]) -> dict[str, JournalEntry]:
        return await self._journal.claim(entries)

    async def journal_find_many(self, capability: str, keys: Sequence[str],
                                provider: str | None = None) -> dict[str, list[JournalEntry]]:
        return await self._journal.find_many(capability, keys, provider)

    async def journal_put_many(self, entries: Sequence[JournalEntry], spend: Sequence[SpendDelta] = ()) -> None:
        await self._journal.put_many(entries, spend)

    # outbox
    async def outbox_add(self, *, capability: str, method: str, payload: dict[str, Any], idempotency_key: str,
                         request_id: str, reason: OutboxReason, now: float, provider: str | None = None,
                         error: str | None = None) -> OutboxItem:
        return await self._outbox.add(capability=capability, method=method, payload=payload,
                                     idempotency_key=idempotency_key, request_id=request_id, reason=reason, now=now,
                                     provider=provider, error=error)

    async def outbox_get(self, item_id: int) -> OutboxItem | None:
        return await self._outbox.get(item_id)

    async def outbox_find(self, capability: str, key: str) -> OutboxItem | None:
        return await self._outbox.find(capability, key)

    async def outbox_list(self, capability: str | None = None, states: tuple[str, ...] = ("pending", "parked"),
                          limit: int = 1000) -> list[OutboxItem]:
        return await self._outbox.list(capability, states, limit)

    async def outbox_update(self, item_id: int, now: float, **fields: Any) -> OutboxItem | None:
        return await self._outbox.update(item_id, now, **fields)

    async def outbox_lease(self, capability: str, owner: str, lease_s: float, limit: int,
                           ids: Sequence[int] | None = None) -> list[OutboxItem]:
        return await self._outbox.lease(capability, owner, lease_s, limit, ids)

    async def outbox_release(self, ids: Sequence[int], owner: str) -> None:
        await self._outbox.release(ids, owner)

    async def outbox_counts(self) -> dict[tuple[str, str], int]:
        return await self._outbox.counts()

    # gateway-wide
    async def secret(self, name: str) -> bytes:
        return await self._shared.secret(name)

    async def put_marker(self, token: str, node: str) -> None:
        await self._shared.put_marker(token, node)

    async def find_marker(self, token: str) -> str | None:
        return await self._shared.find_marker(token)

    async def prune(self, *, journal_before: float, outbox_before: float) -> dict[str, int]:
        """The journal and the outbox a batch per transaction (actors/durable/batches.py):
        the writes of requests in flight go between them. Markers and spend rows are few: one more."""
        journal = await in_batches(lambda batch: self._db.write(self._journal.prune, journal_before, batch))
        outbox = await in_batches(lambda batch: self._db.write(self._outbox.prune, outbox_before, batch))
        spend = await self._db.write(self._prune_rest)
        return {"journal": journal, "outbox": outbox, "spend": spend}

    def _prune_rest(self, db: sqlite3.Connection) -> int:
        self._shared.prune(db)
        return self._spend.prune(db)

    # spend
    async def spend_add(self, deltas: Sequence[SpendDelta]) -> None:
        await self._spend.add(deltas)

    async def spend_get(self, capability: str | None = None, at: float | None = None) -> list[SpendRow]:
        return await self._spend.get(capability, at)

    async def balance_put(self, capability: str, provider: str, remaining: float, at: float) -> None:
        await self._spend.balance_put(capability, provider, remaining, at)

    # delivery events and the suppression list: DeliveryEventCalls (event_calls.py)

    async def ping(self) -> None:
        await self._db.read(lambda db: db.execute("SELECT 1").fetchall())

    def health(self) -> StoreHealth:
        return self._db.health()

    async def close(self) -> None:
        await self._db.close()
