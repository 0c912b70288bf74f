"""The PostgreSQL store's one seam: a small psycopg connection pool per
actor process, opened (and the schema migrated) on the first statement.
The tables' code (keys.py, journal.py, ...) hands it one statement at a
time; each runs in autocommit, its own transaction.

A failure to reach the server is a StoreUnavailable that says why, without
the password, and is counted in the store's health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from actors.durable.location import StoreLocation
from actors.durable.schema import PG_MIGRATIONS, PG_VERSION
from actors.durable.store import StoreHealth, StoreUnavailable
from actors.durable.tracking import HealthTracker

__all__ = ["MIGRATION_LOCK", "PostgresPool", "PostgresRunner", "migrate"]

# pg_advisory_xact_lock's key for schema migrations: actors starting together migrate once.
MIGRATION_LOCK = 0x61_69_63_6D_6F  # "aicmo"
# How long one direct connection's word on why the pool got none is kept.
DIAGNOSIS_KEPT_S = 5.0

Params = dict[str, Any] | Sequence[Any]


class PostgresRunner(Protocol):
    """What the tables' code needs of the server: one statement run, its rows back."""

    namespace: str

    def now(self) -> float: ...
    async def fetch(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]: ...
    def unavailable(self, exc: BaseException, why: str | None = None) -> StoreUnavailable: ...


class PostgresPool:
    kind = "postgresql"

    def __init__(self, location: StoreLocation, namespace: str, *, password: str | None = None, pool_size: int = 4,
                 wait_s: float = 2.0, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        assert location.kind == "postgresql" and location.conninfo is not None
        self.url = location.display
        self.namespace = namespace
        self._conninfo = location.conninfo
        self._password = password
        self._secrets = sorted({s for s in [password or "", *location.secrets()] if s}, key=len, reverse=True)
        self._pool_size = pool_size
        self._wait_s = wait_s
        self._clock = clock
        self._monotonic = monotonic
        self._pool: Any = None
        self._opening: asyncio.Lock | None = None
        self._diagnosing: asyncio.Lock | None = None
        self._diagnosis: tuple[float, str] | None = None
        self.tracker = HealthTracker(self.url, self.kind)

    def now(self) -> float:
        """The store's wall clock (leases use the server's, in SQL)."""
        return self._clock()

    async def fetch(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Runs one statement on a connection of the pool; its rows (none for
        a statement that returns none)."""
        import psycopg

        pool = await self._open()
        self.tracker.round_trip()
        started = self._monotonic()
        try:
            async with pool.connection(timeout=self._wait_s) as conn:
                cur = await conn.execute(sql, params)
                rows = await cur.fetchall() if cur.description is not None else []
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
            # The pool's own errors (PoolTimeout, TooManyRequests) say only "no connection".
            why = await self._why_no_connection(pool) if type(exc).__module__.startswith("psycopg_pool") else None
            raise self.unavailable(exc, why) from None
        finally:
            self.tracker.busy(self._monotonic() - started)
        self.tracker.ok(self._clock())
        return rows

    def unavailable(self, exc: BaseException, why: str | None = None) -> StoreUnavailable:
        """The error to raise, recorded in the store's health."""
        message = self._clean(f"{type(exc).__name__}: {exc}" + (f" ({why})" if why else ""))
        self.tracker.failed(message, self._clock())
        return StoreUnavailable(self.url, message)

    def health(self) -> StoreHealth:
        return self.tracker.snapshot()

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # --- connecting ----------------------------------------------------------------------
    def _clean(self, text: str) -> str:
        """A driver's message without the password, whatever quoted it."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())[:500]

    async def _why_no_connection(self, pool: Any = None) -> str:
        """The pool says only that it got no connection in time. With
        connections of its own, they were all busy; with none, one direct
        attempt says why (refused, the password, no such database), which is
        what an operator needs to read. One attempt at a time, its answer
        kept a few seconds: under load, a connection per failed request
        would exhaust the server's max_connections."""
        import psycopg

        if pool is not None:
            stats = pool.get_stats()
            if stats.get("pool_size", 0) > 0:
                return (f"all {stats['pool_size']} connections of this actor stayed busy "
                        f"({stats.get('requests_waiting', 0)} requests waiting): the server is slow or overloaded")
        if self._diagnosing is None:
            self._diagnosing = asyncio.Lock()
        async with self._diagnosing:
            if self._diagnosis is not None and self._monotonic() - self._diagnosis[0] < DIAGNOSIS_KEPT_S:
                return self._diagnosis[1]
            kwargs: dict[str, Any] = {"connect_timeout": max(1, round(self._wait_s))}
            if self._password:
                kwargs["password"] = self._password
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, **kwargs)
            except (psycopg.Error, OSError) as exc:
                why = " ".join(str(exc).split())
            else:
                await conn.close()
                why = "the server answers now; this actor's pool had no connection in time"
            self._diagnosis = (self._monotonic(), why)
            return why

    async def _open(self) -> Any:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is not None:
                return self._pool
            import psycopg
            from psycopg_pool import AsyncConnectionPool

            kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, round(self._wait_s)),
                                      "application_name": f"aicmo-gateway/{self.namespace}"[:63]}
            if self._password:
                kwargs["password"] = self._password
            pool = AsyncConnectionPool(self._conninfo, min_size=1, max_size=self._pool_size, kwargs=kwargs,
                                       open=False, timeout=self._wait_s, name=f"aicmo-{self.namespace}")
            try:
                await pool.open(wait=False)
                async with pool.connection(timeout=self._wait_s) as conn:
                    await migrate(conn)
            except (psycopg.Error, OSError) as exc:  # PoolTimeout is a psycopg.Error too
                await pool.close()
                why = await self._why_no_connection() if type(exc).__module__.startswith("psycopg_pool") else None
                raise self.unavailable(exc, why) from None
            self._pool = pool
            return pool


async def migrate(conn: Any) -> None:
    """Brings the database to the current schema under an advisory lock held
    for the transaction: actors that start together wait for the first."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS aicmo_schema (version INTEGER NOT NULL, "
                           "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        cur = await conn.execute("SELECT coalesce(max(version), 0) FROM aicmo_schema")
        (version,) = await cur.fetchone()
        if version > PG_VERSION:
            raise RuntimeError(f"the database's gateway schema is version {version}, newer than this gateway "
                               f"knows ({PG_VERSION}): upgrade aicmo-gateway on every node")
        for step in range(version, PG_VERSION):
            await conn.execute(PG_MIGRATIONS[step])
            await conn.execute("INSERT INTO aicmo_schema (version) VALUES (%s)", (step + 1,))
