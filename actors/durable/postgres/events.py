"""Delivery events and the suppression list in PostgreSQL (store.py:
events_*, suppress_*). An event is kept once by its key (ON CONFLICT DO
NOTHING): a provider's retries and replays, on any HTTP replica, add
nothing."""

from __future__ import annotations

from collections.abc import Sequence

from actors.durable.events_rows import (
    EVENT_COLUMNS,
    SENT_COLUMNS,
    SUPPRESSION_COLUMNS,
    event_row,
    sent_message,
    stored_event,
    suppression,
)
from actors.durable.postgres.pool import PostgresRunner
from actors.durable.store import SentMessage, StoredEvent, Suppression
from actors.events.model import DeliveryEvent, RequestRefs

__all__ = ["PostgresEvents"]

_COLUMNS = ("namespace", "capability", "provider", "event_id", "request_id", "key_hash", "message_ref", "state",
            "cause", "recipient", "occurred_at", "received_at", "event")


class PostgresEvents:
    def __init__(self, db: PostgresRunner):
        self._db = db

    async def put(self, capability: str, provider: str, events: Sequence[DeliveryEvent], received_at: float) -> int:
        if not events:
            return 0
        rows = [event_row(self._db.namespace, capability, provider, e, received_at) for e in events]
        values = ", ".join("(" + ", ".join(["%s"] * len(_COLUMNS)) + ")" for _ in rows)
        sql = (f"WITH added AS (INSERT INTO aicmo_delivery_events ({', '.join(_COLUMNS)}) VALUES {values} "
               "ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM added")
        [(n,)] = await self._db.fetch(sql, [v for row in rows for v in row])
        return int(n)

    async def find(self, refs: RequestRefs, limit: int) -> list[StoredEvent]:
        rows = await self._db.fetch(
            f"SELECT {EVENT_COLUMNS} FROM aicmo_delivery_events WHERE namespace = %(ns)s AND ("
            "request_id = ANY(%(r)s) OR key_hash = ANY(%(k)s) OR message_ref = ANY(%(m)s)) "
            "ORDER BY received_at, event_id LIMIT %(limit)s",
            {"ns": self._db.namespace, "r": list(refs.request_ids), "k": list(refs.key_hashes),
             "m": list(refs.message_refs), "limit": limit})
        return [stored_event(r) for r in rows]

    async def since(self, capability: str, received_after: float, limit: int) -> list[StoredEvent]:
        rows = await self._db.fetch(
            f"SELECT {EVENT_COLUMNS} FROM aicmo_delivery_events WHERE namespace = %s AND capability = %s "
            "AND received_at > %s ORDER BY received_at, event_id LIMIT %s",
            (self._db.namespace, capability, received_after, limit))
        return [stored_event(r) for r in rows]

    async def counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        rows = await self._db.fetch(
            "SELECT capability, provider, count(*), count(*) FILTER (WHERE request_id IS NULL AND key_hash IS NULL "
            "AND message_ref IS NULL) FROM aicmo_delivery_events WHERE namespace = %s GROUP BY capability, provider",
            (self._db.namespace,))
        return {(c, p): (int(n), int(u)) for c, p, n, u in rows}

    async def suppress_add(self, rows: Sequence[Suppression]) -> int:
        if not rows:
            return 0
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
        params = [v for r in rows for v in (self._db.namespace, r.capability, r.address.lower(), r.reason,
                                             r.provider, r.request_id, r.added_at)]
        [(n,)] = await self._db.fetch(
            "WITH added AS (INSERT INTO aicmo_suppressions (namespace, capability, address, reason, provider, "
            f"request_id, added_at) VALUES {values} ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM added",
            params)
        return int(n)

    async def suppress_list(self, capability: str | None, addresses: Sequence[str] | None) -> list[Suppression]:
        if addresses is not None and not addresses:
            return []
        rows = await self._db.fetch(
            f"SELECT {SUPPRESSION_COLUMNS} FROM aicmo_suppressions WHERE namespace = %(ns)s "
            "AND (%(cap)s::text IS NULL OR capability = %(cap)s) "
            "AND (%(all)s OR address = ANY(%(addresses)s)) ORDER BY added_at, address",
            {"ns": self._db.namespace, "cap": capability, "all": addresses is None,
             "addresses": [a.lower() for a in addresses or ()]})
        return [suppression(r) for r in rows]

    async def suppress_remove(self, address: str, capability: str | None) -> int:
        [(n,)] = await self._db.fetch(
            "WITH gone AS (DELETE FROM aicmo_suppressions WHERE namespace = %(ns)s AND address = %(a)s "
            "AND (%(cap)s::text IS NULL OR capability = %(cap)s) RETURNING 1) SELECT count(*) FROM gone",
            {"ns": self._db.namespace, "a": address.lower(), "cap": capability})
        return int(n)

    async def sent_put(self, rows: Sequence[SentMessage]) -> None:
        if not rows:
            return
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
        await self._db.fetch(
            "WITH added AS (INSERT INTO aicmo_sent_messages (namespace, capability, request_id, provider, key_hash, "
            f"message_ref, rfc_message_id, payload, sent_at) VALUES {values} ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT count(*) FROM added",
            [v for r in rows for v in (self._db.namespace, r.capability, r.request_id, r.provider, r.key_hash,
                                       r.message_ref, r.rfc_message_id, r.payload, r.sent_at)])

    async def sent_find(self, capability: str, refs: RequestRefs) -> list[SentMessage]:
        rows = await self._db.fetch(
            f"SELECT {SENT_COLUMNS} FROM aicmo_sent_messages WHERE namespace = %(ns)s AND capability = %(cap)s AND ("
            "request_id = ANY(%(r)s) OR key_hash = ANY(%(k)s) OR message_ref = ANY(%(m)s)) ORDER BY sent_at",
            {"ns": self._db.namespace, "cap": capability, "r": list(refs.request_ids), "k": list(refs.key_hashes),
             "m": list(refs.message_refs)})
        return [sent_message(r) for r in rows]

    async def sent_mark_resent(self, capability: str, request_id: str, now: float) -> bool:
        rows = await self._db.fetch(
            "UPDATE aicmo_sent_messages SET resent_at = %s WHERE namespace = %s AND capability = %s "
            "AND request_id = %s AND resent_at IS NULL RETURNING 1", (now, self._db.namespace, capability, request_id))
        return len(rows) == 1
