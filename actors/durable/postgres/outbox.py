"""The outbox in PostgreSQL (store.py: outbox_add ... outbox_counts). One
live item per key is a partial unique index; items are leased with
`SELECT ... FOR UPDATE SKIP LOCKED`, so two drains, on any machines, never
lease one item, and neither waits for the other's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors.durable.postgres.pool import PostgresRunner
from actors.durable.postgres.sql import DECIDE_ROUNDS, NOW
from actors.durable.rows import OUTBOX_COLUMNS, blob, encode, outbox_item
from actors.durable.store import OUTBOX_FIELDS, OutboxItem, OutboxReason

__all__ = ["PostgresOutbox"]

OUTBOX = ", ".join(OUTBOX_COLUMNS)


class PostgresOutbox:
    def __init__(self, db: PostgresRunner):
        self._db = db

    async def add(self, *, capability: str, method: str, payload: dict[str, Any], idempotency_key: str,
                  request_id: str, reason: OutboxReason, now: float, provider: str | None = None,
                  error: str | None = None) -> OutboxItem:
        ns = self._db.namespace
        state = "pending" if reason == "queued" else "parked"
        for _ in range(DECIDE_ROUNDS):
            rows = await self._db.fetch(
                f"INSERT INTO aicmo_outbox (namespace, capability, method, payload, idempotency_key, request_id, state, "
                f"reason, created_at, updated_at, provider, error) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                f"ON CONFLICT (namespace, capability, idempotency_key) WHERE state IN ('pending', 'parked') "
                f"DO NOTHING RETURNING {OUTBOX}",
                (ns, capability, method, encode(payload), idempotency_key, request_id, state, reason,
                 now, now, provider, error))
            if not rows:  # the key has a live item: that one is this request
                rows = await self._db.fetch(
                    f"SELECT {OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND capability = %s "
                    "AND idempotency_key = %s AND state IN ('pending', 'parked')", (ns, capability, idempotency_key))
            if rows:
                return outbox_item(rows[0])
        raise self._db.unavailable(RuntimeError("the outbox item was neither added nor found"))

    async def get(self, item_id: int) -> OutboxItem | None:
        rows = await self._db.fetch(f"SELECT {OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND id = %s",
                                    (self._db.namespace, item_id))
        return outbox_item(rows[0]) if rows else None

    async def find(self, capability: str, key: str) -> OutboxItem | None:
        rows = await self._db.fetch(f"SELECT {OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND capability = %s "
                                    "AND idempotency_key = %s ORDER BY id DESC LIMIT 1",
                                    (self._db.namespace, capability, key))
        return outbox_item(rows[0]) if rows else None

    async def list(self, capability: str | None = None, states: tuple[str, ...] = ("pending", "parked"),
                   limit: int = 1000) -> list[OutboxItem]:
        sql = f"SELECT {OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND state = ANY(%s)"
        params: tuple[Any, ...] = (self._db.namespace, list(states))
        if capability is not None:
            sql, params = sql + " AND capability = %s", (*params, capability)
        return [outbox_item(r) for r in await self._db.fetch(sql + " ORDER BY id LIMIT %s", (*params, limit))]

    async def update(self, item_id: int, now: float, **fields: Any) -> OutboxItem | None:
        unknown = set(fields) - OUTBOX_FIELDS
        if unknown:
            raise ValueError(f"unknown outbox fields {sorted(unknown)}")
        sets = "".join(f"{name} = %s, " for name in fields)  # names checked against OUTBOX_FIELDS above
        values = [blob(v) if k in ("payload", "result") else v for k, v in fields.items()]
        rows = await self._db.fetch(f"UPDATE aicmo_outbox SET {sets}updated_at = %s, lease_owner = NULL, "
                                    f"lease_until = NULL WHERE namespace = %s AND id = %s RETURNING {OUTBOX}",
                                    (*values, now, self._db.namespace, item_id))
        return outbox_item(rows[0]) if rows else None

    async def lease(self, capability: str, owner: str, lease_s: float, limit: int,
                    ids: Sequence[int] | None = None) -> list[OutboxItem]:
        only = "AND id = ANY(%(ids)s)" if ids is not None else ""
        rows = await self._db.fetch(
            f"""WITH now_ AS (SELECT {NOW} AS t),
            picked AS (SELECT id FROM aicmo_outbox, now_ WHERE namespace = %(ns)s AND capability = %(cap)s
                       AND state = 'pending' AND (lease_until IS NULL OR lease_until <= now_.t) {only}
                       ORDER BY id LIMIT %(limit)s FOR UPDATE OF aicmo_outbox SKIP LOCKED)
            UPDATE aicmo_outbox o SET lease_owner = %(owner)s, lease_until = (SELECT t FROM now_) + %(lease)s
            FROM picked WHERE o.id = picked.id
            RETURNING {', '.join('o.' + c for c in OUTBOX_COLUMNS)}""",
            {"ns": self._db.namespace, "cap": capability, "owner": owner, "lease": lease_s, "limit": limit,
             "ids": list(ids or [])})
        return sorted((outbox_item(r) for r in rows), key=lambda item: item.id)

    async def release(self, ids: Sequence[int], owner: str) -> None:
        if ids:
            await self._db.fetch("UPDATE aicmo_outbox SET lease_owner = NULL, lease_until = NULL WHERE namespace = %s "
                                 "AND id = ANY(%s) AND lease_owner = %s", (self._db.namespace, list(ids), owner))

    async def counts(self) -> dict[tuple[str, str], int]:
        rows = await self._db.fetch("SELECT capability, state, count(*) FROM aicmo_outbox WHERE namespace = %s "
                                    "AND state IN ('pending', 'parked') GROUP BY capability, state",
                                    (self._db.namespace,))
        return {(cap, state): int(n) for cap, state, n in rows}
