"""The shared state store: PostgreSQL, through psycopg 3's async driver and
a small connection pool per actor process (pool.py), its tables each kept
by a small collaborator: keys (claims and first results), the journal, the
outbox, spend and meters, secrets and markers. This class composes them
behind the StateStore interface (actors/durable/store.py).

Why psycopg 3 rather than asyncpg: its pool (psycopg_pool) is maintained
with it, it goes through libpq (so `PGPASSWORD`, `PGPASSFILE`, `sslmode`
and the rest of libpq's settings work as operators expect), and it works
behind PgBouncer in transaction mode once prepared statements are off.
asyncpg is faster on raw round trips, but a request here costs a handful
of them against a Ray call of ~2 ms (bench/store.py measures it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from actors.durable.batches import in_batches
from actors.durable.event_calls import DeliveryEventCalls
from actors.durable.location import StoreLocation
from actors.durable.postgres.events import PostgresEvents
from actors.durable.postgres.journal import PostgresJournal
from actors.durable.postgres.keys import PostgresKeys
from actors.durable.postgres.outbox import PostgresOutbox
from actors.durable.postgres.pool import Params, PostgresPool
from actors.durable.postgres.shared import PostgresShared
from actors.durable.postgres.spend import PostgresSpend
from actors.durable.store import (
    MARKER_TTL_S,
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

__all__ = ["PostgresStore"]

# Ended journal entries and outbox items, a batch per statement (actors/durable/batches.py); rows
# another transaction holds are left for the next round. Old markers are few: one statement.
_PRUNE_JOURNAL = """
    WITH gone AS (DELETE FROM aicmo_journal WHERE (namespace, capability, key, provider) IN (
                      SELECT namespace, capability, key, provider FROM aicmo_journal WHERE namespace = %(ns)s
                      AND state IN ('delivered', 'failed') AND updated_at < %(before)s LIMIT %(batch)s
                      FOR UPDATE SKIP LOCKED)
                  AND state IN ('delivered', 'failed') RETURNING 1)
    SELECT count(*) FROM gone"""
_PRUNE_OUTBOX = """
    WITH gone AS (DELETE FROM aicmo_outbox WHERE id IN (
                      SELECT id FROM aicmo_outbox WHERE namespace = %(ns)s AND state IN ('delivered', 'dropped')
                      AND updated_at < %(before)s LIMIT %(batch)s FOR UPDATE SKIP LOCKED)
                  AND state IN ('delivered', 'dropped') RETURNING 1)
    SELECT count(*) FROM gone"""
_PRUNE_MARKERS = "DELETE FROM aicmo_markers WHERE created_at < %(markers)s"


class PostgresStore(DeliveryEventCalls):
    kind = "postgresql"

    def __init__(self, location: StoreLocation, namespace: str, *, password: str | None = None, pool_size: int = 4,
                 wait_s: float = 2.0, clock: Callable[[], float] = time.time):
        self.url = location.display
        self.namespace = namespace
        self._clock = clock
        # Read at each call, not kept: the contract tests move a store's clock to prune "in 500 days".
        self._db = PostgresPool(location, namespace, password=password, pool_size=pool_size, wait_s=wait_s,
                                clock=lambda: self._clock())
        self.tracker = self._db.tracker
        self._keys = PostgresKeys(self._db)
        self._journal = PostgresJournal(self._db)
        self._outbox = PostgresOutbox(self._db)
        self._spend = PostgresSpend(self._db)
        self._shared = PostgresShared(self._db)
        self._events = PostgresEvents(self._db)

    async def _fetch(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """One statement of one's own (tests hold a connection with it)."""
        return await self._db.fetch(sql, params)

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
        journal = await in_batches(lambda batch: self._count(_PRUNE_JOURNAL, journal_before, batch))
        outbox = await in_batches(lambda batch: self._count(_PRUNE_OUTBOX, outbox_before, batch))
        await self._db.fetch(_PRUNE_MARKERS, {"markers": self._db.now() - MARKER_TTL_S})
        return {"journal": journal, "outbox": outbox, "spend": await self._spend.prune()}

    async def _count(self, sql: str, before: float, batch: int) -> int:
        [(n,)] = await self._db.fetch(sql, {"ns": self.namespace, "before": before, "batch": batch})
        return int(n)

    # spend
    async def spend_add(self, deltas: Sequence[SpendDelta]) -> None:
        await self._spend.add(deltas)

    async def spend_get(self, capability: str | None = None, at: float | None = None) -> list[SpendRow]:
        return await self._spend.get(capability, at)

    async def balance_put(self, capability: str, provider: str, remaining: float, at: float) -> None:
        await self._spend.balance_put(capability, provider, remaining, at)

    # delivery events and the suppression list: DeliveryEventCalls (event_calls.py)

    async def ping(self) -> None:
        await self._db.fetch("SELECT 1")

    def health(self) -> StoreHealth:
        return self._db.health()

    async def close(self) -> None:
        await self._db.close()
