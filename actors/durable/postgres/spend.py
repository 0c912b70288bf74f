"""Spend and meters in PostgreSQL (store.py: spend_add, spend_get,
balance_put; and pruning old periods). A flush is one statement: its deltas
summed per row first (ON CONFLICT may touch a row once per statement), rows
taken in key order so concurrent flushes wait for each other instead of
deadlocking; the additions happen in SQL, so concurrent increments add up."""

from __future__ import annotations

from collections.abc import Sequence

from actors.durable.postgres.pool import PostgresRunner
from actors.durable.postgres.sql import rows_json
from actors.durable.rows import PERIOD_S, SPEND_COLUMNS, spend_row
from actors.durable.store import SPEND_RETENTION_S, SpendDelta, SpendRow

__all__ = ["PRUNE_SPEND", "SPEND_ADD", "PostgresSpend", "spend_rows"]

SPEND_ADD = """
WITH input AS (
    SELECT capability, provider, period, period_start, sum(calls) AS calls, sum(maybe_calls) AS maybe_calls,
           sum(amount_nanos) AS amount_nanos, max(currency) AS currency, max(at) AS at
    FROM json_to_recordset(%(rows)s::json) AS i(capability text, provider text, period text, period_start float8,
                                                calls bigint, maybe_calls bigint, amount_nanos bigint,
                                                currency text, at float8)
    GROUP BY capability, provider, period, period_start),
s AS (
    INSERT INTO aicmo_spend AS t (namespace, capability, provider, period, period_start, calls, maybe_calls,
                                  amount_nanos, currency, updated_at)
    SELECT %(ns)s, capability, provider, period, period_start, calls, maybe_calls, amount_nanos, currency, at
    FROM input ORDER BY capability, provider, period, period_start
    ON CONFLICT (namespace, capability, provider, period, period_start) DO UPDATE SET
        calls = t.calls + excluded.calls, maybe_calls = t.maybe_calls + excluded.maybe_calls,
        amount_nanos = t.amount_nanos + excluded.amount_nanos, currency = coalesce(excluded.currency, t.currency),
        updated_at = excluded.updated_at
    RETURNING 1),
m AS (
    INSERT INTO aicmo_provider_meter AS t (namespace, capability, provider, lifetime_calls)
    SELECT %(ns)s, capability, provider, sum(calls + maybe_calls) FROM input GROUP BY capability, provider
    ORDER BY capability, provider
    ON CONFLICT (namespace, capability, provider) DO UPDATE SET lifetime_calls = t.lifetime_calls + excluded.lifetime_calls
    RETURNING 1)
SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM m)"""

_SPEND_GET = (f"SELECT {SPEND_COLUMNS} FROM aicmo_provider_meter m LEFT JOIN aicmo_spend s ON "
              "s.namespace = m.namespace AND s.capability = m.capability AND s.provider = m.provider "
              "AND s.period_start = (SELECT max(x.period_start) FROM aicmo_spend x WHERE x.namespace = s.namespace "
              "AND x.capability = s.capability AND x.provider = s.provider AND x.period = s.period "
              "AND x.period_start <= %(at)s) WHERE m.namespace = %(ns)s")

_BALANCE_PUT = ("INSERT INTO aicmo_provider_meter AS t (namespace, capability, provider, lifetime_calls, "
                "balance_remaining, balance_at, balance_calls_at) VALUES (%s, %s, %s, 0, %s, %s, 0) "
                "ON CONFLICT (namespace, capability, provider) DO UPDATE SET "
                "balance_remaining = excluded.balance_remaining, balance_at = excluded.balance_at, "
                "balance_calls_at = t.lifetime_calls")

PRUNE_SPEND = ("WITH gone AS (DELETE FROM aicmo_spend WHERE namespace = %(ns)s AND ("
               + " OR ".join(f"(period = '{p}' AND period_start < %(before)s - {s})" for p, s in PERIOD_S.items())
               + ") RETURNING 1) SELECT count(*) FROM gone")


def spend_rows(deltas: Sequence[SpendDelta]) -> str:
    """The deltas as SPEND_ADD's `rows` parameter."""
    return rows_json([
        {"capability": d.capability, "provider": d.provider, "period": d.period, "period_start": d.period_start,
         "calls": d.calls, "maybe_calls": d.maybe_calls, "amount_nanos": d.amount_nanos, "currency": d.currency,
         "at": d.at} for d in deltas])


class PostgresSpend:
    def __init__(self, db: PostgresRunner):
        self._db = db

    async def add(self, deltas: Sequence[SpendDelta]) -> None:
        if not deltas:
            return
        await self._db.fetch(SPEND_ADD, {"ns": self._db.namespace, "rows": spend_rows(deltas)})

    async def get(self, capability: str | None = None, at: float | None = None) -> list[SpendRow]:
        sql = _SPEND_GET + (" AND m.capability = %(cap)s" if capability is not None else "")
        rows = await self._db.fetch(sql + " ORDER BY m.capability, m.provider, s.period", {
            "ns": self._db.namespace, "cap": capability, "at": self._db.now() if at is None else at})
        return [spend_row(r) for r in rows]

    async def balance_put(self, capability: str, provider: str, remaining: float, at: float) -> None:
        await self._db.fetch(_BALANCE_PUT, (self._db.namespace, capability, provider, remaining, at))

    async def prune(self) -> int:
        """Deletes the spend rows of periods that ended more than SPEND_RETENTION_S ago, on the store's clock."""
        [(n,)] = await self._db.fetch(PRUNE_SPEND, {"ns": self._db.namespace,
                                                    "before": self._db.now() - SPEND_RETENTION_S})
        return int(n)
