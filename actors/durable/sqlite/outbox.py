"""The outbox in SQLite (store.py: outbox_add ... outbox_counts; and
pruning what ended). One live item per key is a unique index; a lease is
taken in one write transaction, which no other process's can interleave."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from actors.durable.rows import OUTBOX_COLUMNS, blob, encode, outbox_item
from actors.durable.sqlite.connection import KEYS_PER_QUERY, SqliteRunner, marks
from actors.durable.store import OUTBOX_FIELDS, OutboxItem, OutboxReason

__all__ = ["SqliteOutbox"]

_SELECT = f"SELECT {', '.join(OUTBOX_COLUMNS)} FROM outbox"
_BLOBS = {"payload", "result", "value"}


def _one(rows: list[tuple[Any, ...]]) -> OutboxItem | None:
    return outbox_item(rows[0]) if rows else None


class SqliteOutbox:
    def __init__(self, db: SqliteRunner):
        self._db = db

    async def add(self, *, capability: str, method: str, payload: dict[str, Any], idempotency_key: str,
                  request_id: str, reason: OutboxReason, now: float, provider: str | None = None,
                  error: str | None = None) -> OutboxItem:
        state = "pending" if reason == "queued" else "parked"
        row = (capability, method, payload, idempotency_key, request_id, state, reason, now, provider, error)
        return await self._db.write(self._add, *row)

    async def get(self, item_id: int) -> OutboxItem | None:
        return _one(await self._db.read(self._select, " WHERE namespace=? AND id=?", (self._db.namespace, item_id)))

    async def find(self, capability: str, key: str) -> OutboxItem | None:
        return _one(await self._db.read(self._select, " WHERE namespace=? AND capability=? AND idempotency_key=? "
                                        "ORDER BY id DESC LIMIT 1", (self._db.namespace, capability, key)))

    async def list(self, capability: str | None = None, states: tuple[str, ...] = ("pending", "parked"),
                   limit: int = 1000) -> list[OutboxItem]:
        where, args = [f"namespace=? AND state IN ({marks(len(states))})"], [self._db.namespace, *states]
        if capability is not None:
            where.append("capability=?")
            args.append(capability)
        rows = await self._db.read(self._select, " WHERE " + " AND ".join(where) + " ORDER BY id LIMIT ?",
                                   (*args, limit))
        return [outbox_item(r) for r in rows]

    async def update(self, item_id: int, now: float, **fields: Any) -> OutboxItem | None:
        unknown = set(fields) - OUTBOX_FIELDS
        if unknown:
            raise ValueError(f"unknown outbox fields {sorted(unknown)}")
        return await self._db.write(self._update, item_id, now, fields)

    async def lease(self, capability: str, owner: str, lease_s: float, limit: int,
                    ids: Sequence[int] | None = None) -> list[OutboxItem]:
        return await self._db.write(self._lease, capability, owner, lease_s, limit, ids)

    async def release(self, ids: Sequence[int], owner: str) -> None:
        await self._db.write(self._release, ids, owner)

    async def counts(self) -> dict[tuple[str, str], int]:
        rows = await self._db.read(lambda db: db.execute(
            "SELECT capability, state, COUNT(*) FROM outbox WHERE namespace=? AND state IN ('pending','parked') "
            "GROUP BY capability, state", (self._db.namespace,)).fetchall())
        return {(cap, state): n for cap, state, n in rows}

    def prune(self, db: sqlite3.Connection, before: float, batch: int) -> int:
        """In the caller's transaction: deletes up to `batch` items that ended
        (delivered, dropped) before `before`."""
        return db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE namespace=? "
                          "AND state IN ('delivered','dropped') AND updated_at<? LIMIT ?)",
                          (self._db.namespace, before, batch)).rowcount

    # --- on the store's thread ---------------------------------------------------------
    @staticmethod
    def _select(db: sqlite3.Connection, where: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        return db.execute(_SELECT + where, args).fetchall()

    def _add(self, db: sqlite3.Connection, capability: str, method: str, payload: dict[str, Any],
             idempotency_key: str, request_id: str, state: str, reason: str, now: float, provider: str | None,
             error: str | None) -> OutboxItem:
        ns = self._db.namespace
        # One live item per key (a unique index): a request queued twice
        # (a retry after a lost reply) is the same request.
        cur = db.execute(
            "INSERT INTO outbox (namespace, capability, method, payload, idempotency_key, request_id, state, "
            "reason, created_at, updated_at, provider, error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (namespace, capability, idempotency_key) WHERE state IN ('pending','parked') DO NOTHING",
            (ns, capability, method, encode(payload), idempotency_key, request_id, state, reason, now, now, provider,
             error))
        if cur.rowcount:
            row = db.execute(_SELECT + " WHERE id=?", (cur.lastrowid,)).fetchone()
        else:
            row = db.execute(_SELECT + " WHERE namespace=? AND capability=? AND idempotency_key=? AND state "
                             "IN ('pending','parked')", (ns, capability, idempotency_key)).fetchone()
        return outbox_item(row)

    def _release(self, db: sqlite3.Connection, ids: Sequence[int], owner: str) -> None:
        db.executemany("UPDATE outbox SET lease_owner=NULL, lease_until=NULL WHERE namespace=? AND id=? "
                       "AND lease_owner=?", [(self._db.namespace, i, owner) for i in ids])

    def _update(self, db: sqlite3.Connection, item_id: int, now: float, fields: dict[str, Any]) -> OutboxItem | None:
        values = [blob(v) if k in _BLOBS else v for k, v in fields.items()]
        sets = "".join(f"{k}=?, " for k in fields)  # names checked against OUTBOX_FIELDS
        db.execute(f"UPDATE outbox SET {sets}updated_at=?, lease_owner=NULL, lease_until=NULL "
                   "WHERE namespace=? AND id=?", (*values, now, self._db.namespace, item_id))
        row = db.execute(_SELECT + " WHERE namespace=? AND id=?", (self._db.namespace, item_id)).fetchone()
        return None if row is None else outbox_item(row)

    def _lease(self, db: sqlite3.Connection, capability: str, owner: str, lease_s: float, limit: int,
               ids: Sequence[int] | None) -> list[OutboxItem]:
        now = self._db.now()
        where = "namespace=? AND capability=? AND state='pending' AND (lease_until IS NULL OR lease_until<=?)"
        args: list[Any] = [self._db.namespace, capability, now]
        if ids is not None:
            ids = list(ids)[:KEYS_PER_QUERY]
            where += f" AND id IN ({marks(len(ids))})"
            args += ids
        rows = db.execute(f"{_SELECT} WHERE {where} ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        items = [outbox_item(r) for r in rows]
        db.executemany("UPDATE outbox SET lease_owner=?, lease_until=? WHERE id=?",
                       [(owner, now + lease_s, item.id) for item in items])
        return [msgspec.structs.replace(item, lease_owner=owner) for item in items]
