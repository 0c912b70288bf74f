"""The SQLite store's spend methods (store.py: spend_add, spend_get,
balance_put), mixed into SqliteStore (sqlite.py): each provider's spend per
period and its lifetime calls and live balance, added to in SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from actors.durable.store import SPEND_RETENTION_S, SpendDelta, SpendRow

__all__ = ["PERIOD_S", "SPEND_COLUMNS", "SqliteSpend", "prune_spend", "spend_row"]

# The longest each period kind lasts: a row is pruned once even the longest ended long enough ago.
PERIOD_S = {"hour": 3600.0, "day": 86400.0, "month": 31 * 86400.0}

SPEND_COLUMNS = ("m.capability, m.provider, s.period, s.period_start, coalesce(s.calls, 0), "
                 "coalesce(s.maybe_calls, 0), coalesce(s.amount_nanos, 0), s.currency, m.lifetime_calls, "
                 "m.balance_remaining, m.balance_at, m.balance_calls_at")

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


def spend_row(row: Sequence[Any]) -> SpendRow:
    (capability, provider, period, period_start, calls, maybe_calls, amount_nanos, currency, lifetime_calls,
     balance_remaining, balance_at, balance_calls_at) = row
    return SpendRow(capability=capability, provider=provider, period=period, period_start=period_start,
                    calls=int(calls), maybe_calls=int(maybe_calls), amount_nanos=int(amount_nanos), currency=currency,
                    lifetime_calls=int(lifetime_calls), balance_remaining=balance_remaining, balance_at=balance_at,
                    balance_calls_at=None if balance_calls_at is None else int(balance_calls_at))


def prune_spend(db: sqlite3.Connection, namespace: str, now: float) -> int:
    """Deletes the spend rows of periods that ended more than SPEND_RETENTION_S ago."""
    return sum(db.execute("DELETE FROM spend WHERE namespace=? AND period=? AND period_start<?",
                          (namespace, period, now - SPEND_RETENTION_S - length)).rowcount
               for period, length in PERIOD_S.items())


class SqliteSpend:
    """Mixed into SqliteStore: uses its `_run` (the store's thread), `_session` and `namespace`."""

    namespace: str

    async def spend_add(self, deltas: Sequence[SpendDelta]) -> None:
        if deltas:
            await self._run(SqliteSpend._spend_add, list(deltas))  # type: ignore[attr-defined]

    async def spend_get(self, capability: str | None = None, at: float | None = None) -> list[SpendRow]:
        return await self._run(SqliteSpend._spend_get, capability, at)  # type: ignore[attr-defined]

    async def balance_put(self, capability: str, provider: str, remaining: float, at: float) -> None:
        await self._run(SqliteSpend._balance_put, capability, provider, remaining, at)  # type: ignore[attr-defined]

    def _spend_add(self, deltas: list[SpendDelta]) -> None:
        with self._session(write=True) as db:  # type: ignore[attr-defined]
            for d in deltas:
                db.execute(_SPEND_ADD, (self.namespace, d.capability, d.provider, d.period, d.period_start, d.calls,
                                        d.maybe_calls, d.amount_nanos, d.currency, d.at))
                db.execute(_METER_ADD, (self.namespace, d.capability, d.provider, d.calls + d.maybe_calls))

    def _spend_get(self, capability: str | None, at: float | None) -> list[SpendRow]:
        sql, args = _SPEND_GET, [self._clock() if at is None else at, self.namespace]  # type: ignore[attr-defined]
        if capability is not None:
            sql, args = sql + " AND m.capability = ?", [*args, capability]
        with self._session() as db:  # type: ignore[attr-defined]
            rows = db.execute(sql + " ORDER BY m.capability, m.provider, s.period", args).fetchall()
        return [spend_row(r) for r in rows]

    def _balance_put(self, capability: str, provider: str, remaining: float, at: float) -> None:
        with self._session(write=True) as db:  # type: ignore[attr-defined]
            db.execute(_BALANCE_PUT, (self.namespace, capability, provider, remaining, at))
