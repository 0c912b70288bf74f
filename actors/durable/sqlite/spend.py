"""Spend and meters in SQLite (store.py: spend_add, spend_get, balance_put;
and pruning old periods): each provider's spend per period, its lifetime
calls and its live balance, added to in SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from actors.durable.rows import PERIOD_S, SPEND_COLUMNS, spend_row
from actors.durable.sqlite.connection import SqliteRunner
from actors.durable.store import SPEND_RETENTION_S, SpendDelta, SpendRow

__all__ = ["SqliteSpend"]

_SPEND_ADD = ("INSERT INTO spend (namespace, capability, provider, period, period_start, calls, maybe_calls, "
              "amount_nanos, currency, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
              "ON CONFLICT (namespace, capability, provider, period, period_start) DO UPDATE SET "
              "calls = spend.calls + excluded.calls, maybe_calls = spend.maybe_calls + excluded.maybe_calls, "
              "amount_nanos = spend.amount_nanos + excluded.amount_nanos, "
              "currency = coalesce(excluded.currency, spend.currency), updated_at = excluded.updated_at")
_METER_ADD = ("INSERT INTO provider_meter (namespace, capability, provider, lifetime_calls) VALUES (?,?,?,?) "
              "ON CONFLICT (namespace, capability, provider) DO UPDATE SET "
              "lifetime_calls = provider_meter.lifetime_calls + excluded.lifetime_calls")
_BALANCE_PUT = ("INSERT INTO provider_meter (namespace, capability, provider, lifetime_calls, balance_remaining, "
                "balance_at, balance_calls_at) VALUES (?,?,?,0,?,?,0) "
                "ON CONFLICT (namespace, capability, provider) DO UPDATE SET "
                "balance_remaining = excluded.balance_remaining, balance_at = excluded.balance_at, "
                "balance_calls_at = provider_meter.lifetime_calls")
_SPEND_GET = (f"SELECT {SPEND_COLUMNS} FROM provider_meter m LEFT JOIN spend s ON s.namespace = m.namespace "
              "AND s.capability = m.capability AND s.provider = m.provider AND s.period_start = ("
              "SELECT max(x.period_start) FROM spend x WHERE x.namespace = s.namespace AND x.capability = s.capability "
              "AND x.provider = s.provider AND x.period = s.period AND x.period_start <= ?) WHERE m.namespace = ?")


class SqliteSpend:
    def __init__(self, db: SqliteRunner):
        self._db = db

    async def add(self, deltas: Sequence[SpendDelta]) -> None:
        if deltas:
            await self._db.write(self.add_in, list(deltas))

    async def get(self, capability: str | None = None, at: float | None = None) -> list[SpendRow]:
        sql, args = _SPEND_GET, [self._db.now() if at is None else at, self._db.namespace]
        if capability is not None:
            sql, args = sql + " AND m.capability = ?", [*args, capability]
        rows = await self._db.read(lambda db: db.execute(sql + " ORDER BY m.capability, m.provider, s.period",
                                                         args).fetchall())
        return [spend_row(r) for r in rows]

    async def balance_put(self, capability: str, provider: str, remaining: float, at: float) -> None:
        await self._db.write(self._balance_put, capability, provider, remaining, at)

    def prune(self, db: sqlite3.Connection) -> int:
        """In the caller's transaction: deletes the spend rows of periods that
        ended more than SPEND_RETENTION_S ago, on the store's clock."""
        now = self._db.now()
        return sum(db.execute("DELETE FROM spend WHERE namespace=? AND period=? AND period_start<?",
                              (self._db.namespace, period, now - SPEND_RETENTION_S - length)).rowcount
                   for period, length in PERIOD_S.items())

    def _balance_put(self, db: sqlite3.Connection, capability: str, provider: str, remaining: float,
                     at: float) -> None:
        db.execute(_BALANCE_PUT, (self._db.namespace, capability, provider, remaining, at))

    def add_in(self, db: sqlite3.Connection, deltas: Sequence[SpendDelta]) -> None:
        """In the caller's transaction (the journal's outcomes come with their charges)."""
        ns = self._db.namespace
        for d in deltas:
            db.execute(_SPEND_ADD, (ns, d.capability, d.provider, d.period, d.period_start, d.calls, d.maybe_calls,
                                    d.amount_nanos, d.currency, d.at))
            db.execute(_METER_ADD, (ns, d.capability, d.provider, d.calls + d.maybe_calls))
