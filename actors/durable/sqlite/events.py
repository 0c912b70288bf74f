"""Delivery events and the suppression list in SQLite (store.py: events_*,
suppress_*). An event is kept once by its key (INSERT OR IGNORE): a
provider's retries and replays add nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from actors.durable.events_rows import (
    EVENT_COLUMNS,
    SENT_COLUMNS,
    SUPPRESSION_COLUMNS,
    event_row,
    sent_message,
    stored_event,
    suppression,
)
from actors.durable.sqlite.connection import SqliteRunner, marks
from actors.durable.store import SentMessage, StoredEvent, Suppression
from actors.events.model import DeliveryEvent, RequestRefs

__all__ = ["SqliteEvents"]

_PUT = ("INSERT OR IGNORE INTO delivery_events (namespace, capability, provider, event_id, request_id, key_hash, "
        "message_ref, state, cause, recipient, occurred_at, received_at, event) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")


class SqliteEvents:
    def __init__(self, db: SqliteRunner):
        self._db = db

    async def put(self, capability: str, provider: str, events: Sequence[DeliveryEvent], received_at: float) -> int:
        rows = [event_row(self._db.namespace, capability, provider, e, received_at) for e in events]
        return await self._db.write(lambda db: sum(db.execute(_PUT, row).rowcount for row in rows)) if rows else 0

    async def find(self, refs: RequestRefs, limit: int) -> list[StoredEvent]:
        where, matching = _matching(refs)
        if not where:
            return []
        args = [self._db.namespace, *matching]
        sql = (f"SELECT {EVENT_COLUMNS} FROM delivery_events WHERE namespace = ? AND ({' OR '.join(where)}) "
               "ORDER BY received_at, rowid LIMIT ?")
        rows = await self._db.read(lambda db: db.execute(sql, [*args, limit]).fetchall())
        return [stored_event(r) for r in rows]

    async def since(self, capability: str, received_after: float, limit: int) -> list[StoredEvent]:
        sql = (f"SELECT {EVENT_COLUMNS} FROM delivery_events WHERE namespace = ? AND capability = ? "
               "AND received_at > ? ORDER BY received_at, rowid LIMIT ?")
        rows = await self._db.read(lambda db: db.execute(sql, (self._db.namespace, capability, received_after,
                                                               limit)).fetchall())
        return [stored_event(r) for r in rows]

    async def counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        sql = ("SELECT capability, provider, count(*), sum(CASE WHEN request_id IS NULL AND key_hash IS NULL "
               "AND message_ref IS NULL THEN 1 ELSE 0 END) FROM delivery_events WHERE namespace = ? "
               "GROUP BY capability, provider")
        rows = await self._db.read(lambda db: db.execute(sql, (self._db.namespace,)).fetchall())
        return {(c, p): (int(n), int(u or 0)) for c, p, n, u in rows}

    async def suppress_add(self, rows: Sequence[Suppression]) -> int:
        def add(db: sqlite3.Connection) -> int:
            return sum(db.execute("INSERT OR IGNORE INTO suppressions (namespace, capability, address, reason, "
                                  "provider, request_id, added_at) VALUES (?,?,?,?,?,?,?)",
                                  (self._db.namespace, r.capability, r.address.lower(), r.reason, r.provider,
                                   r.request_id, r.added_at)).rowcount for r in rows)
        return await self._db.write(add) if rows else 0

    async def suppress_list(self, capability: str | None, addresses: Sequence[str] | None) -> list[Suppression]:
        sql, args = f"SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE namespace = ?", [self._db.namespace]
        if capability is not None:
            sql, args = sql + " AND capability = ?", [*args, capability]
        if addresses is not None:
            if not addresses:
                return []
            sql, args = sql + f" AND address IN ({marks(len(addresses))})", [*args, *(a.lower() for a in addresses)]
        rows = await self._db.read(lambda db: db.execute(sql + " ORDER BY added_at, address", args).fetchall())
        return [suppression(r) for r in rows]

    async def suppress_remove(self, address: str, capability: str | None) -> int:
        sql, args = "DELETE FROM suppressions WHERE namespace = ? AND address = ?", [self._db.namespace,
                                                                                      address.lower()]
        if capability is not None:
            sql, args = sql + " AND capability = ?", [*args, capability]
        return await self._db.write(lambda db: db.execute(sql, args).rowcount)

    async def sent_put(self, rows: Sequence[SentMessage]) -> None:
        def put(db: sqlite3.Connection) -> None:
            for r in rows:
                db.execute("INSERT OR IGNORE INTO sent_messages (namespace, capability, request_id, provider, key_hash, "
                           "message_ref, rfc_message_id, payload, sent_at) VALUES (?,?,?,?,?,?,?,?,?)",
                           (self._db.namespace, r.capability, r.request_id, r.provider, r.key_hash, r.message_ref,
                            r.rfc_message_id, r.payload, r.sent_at))
        if rows:
            await self._db.write(put)

    async def sent_find(self, capability: str, refs: RequestRefs) -> list[SentMessage]:
        where, matching = _matching(refs)
        if not where:
            return []
        args = [self._db.namespace, capability, *matching]
        sql = (f"SELECT {SENT_COLUMNS} FROM sent_messages WHERE namespace = ? AND capability = ? AND "
               f"({' OR '.join(where)}) ORDER BY sent_at")
        rows = await self._db.read(lambda db: db.execute(sql, args).fetchall())
        return [sent_message(r) for r in rows]

    async def sent_mark_resent(self, capability: str, request_id: str, now: float) -> bool:
        return await self._db.write(lambda db: db.execute(
            "UPDATE sent_messages SET resent_at = ? WHERE namespace = ? AND capability = ? AND request_id = ? "
            "AND resent_at IS NULL", (now, self._db.namespace, capability, request_id)).rowcount == 1)


def _matching(refs: RequestRefs) -> tuple[list[str], list[Any]]:
    """The conditions (OR-ed) and their arguments that find rows by any of `refs`."""
    where: list[str] = []
    args: list[Any] = []
    for column, values in (("request_id", refs.request_ids), ("key_hash", refs.key_hashes),
                           ("message_ref", refs.message_refs)):
        if values:
            where.append(f"{column} IN ({marks(len(values))})")
            args += list(values)
    return where, args
