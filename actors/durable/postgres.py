"""The shared state store: PostgreSQL, through psycopg 3's async driver and
a small connection pool per actor process.

Why psycopg 3 rather than asyncpg: its pool (psycopg_pool) is maintained
with it, it goes through libpq (so `PGPASSWORD`, `PGPASSFILE`, `sslmode`
and the rest of libpq's settings work as operators expect), and it works
behind PgBouncer in transaction mode once prepared statements are off.
asyncpg is faster on raw round trips, but a request here costs a handful
of them against a Ray call of ~2 ms (bench/store.py measures it).

Each claim is one statement whose outcome the database decides: an
`INSERT ... ON CONFLICT DO UPDATE ... WHERE` that takes a key only when no
one else holds it, returning which keys were won; the outbox is leased with
`SELECT ... FOR UPDATE SKIP LOCKED`. Leases are set and compared on the
server's clock (`clock_timestamp()`), the one clock every machine shares.
Statements run in autocommit: each is its own transaction.

A key whose competing insert commits while our statement runs is neither
won nor visible to it (the statement's snapshot predates it); such keys are
asked about again, so every key comes back decided.
"""

from __future__ import annotations

import asyncio
import secrets as random_bytes
import time
from collections.abc import Callable, Sequence
from typing import Any

from actors.durable.location import StoreLocation
from actors.durable.postgres_sql import (
    CLAIM,
    DECIDE_ROUNDS,
    FINISH_DROP,
    FINISH_STORE,
    JOURNAL_CLAIM,
    JOURNAL_COLUMNS,
    JOURNAL_PUT,
    NOW,
    OUTBOX,
    OUTBOX_COLUMNS,
    RELEASE,
    blob,
    encode,
    migrate,
    outbox_item,
    rows_json,
    unblob,
)
from actors.durable.postgres_spend import PostgresSpend
from actors.durable.store import (
    OUTBOX_FIELDS,
    Claims,
    JournalEntry,
    KeyClaim,
    KeyRecord,
    OutboxItem,
    OutboxReason,
    StoreHealth,
    StoreUnavailable,
)
from actors.durable.tracking import HealthTracker

class PostgresStore(PostgresSpend):
    kind = "postgresql"

    def __init__(self, location: StoreLocation, namespace: str, *, password: str | None = None, pool_size: int = 4,
                 wait_s: float = 2.0, clock: Callable[[], float] = time.time):
        assert location.kind == "postgresql" and location.conninfo is not None
        self.url = location.display
        self.namespace = namespace
        self._conninfo = location.conninfo
        self._password = password
        self._pool_size = pool_size
        self._wait_s = wait_s
        self._clock = clock
        self._pool: Any = None
        self._opening: asyncio.Lock | None = None
        self._diagnosing: asyncio.Lock | None = None
        self._diagnosis: tuple[float, str] | None = None
        self.tracker = HealthTracker(self.url, self.kind)

    # --- plumbing ------------------------------------------------------------------
    def _clean(self, text: str) -> str:
        """A driver's message without the password, whatever quoted it."""
        if self._password:
            text = text.replace(self._password, "***")
        return " ".join(text.split())[:500]

    def _unavailable(self, exc: BaseException, why: str | None = None) -> StoreUnavailable:
        message = self._clean(f"{type(exc).__name__}: {exc}" + (f" ({why})" if why else ""))
        self.tracker.failed(message, self._clock())
        return StoreUnavailable(self.url, message)

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
            if self._diagnosis is not None and time.monotonic() - self._diagnosis[0] < 5.0:
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
            self._diagnosis = (time.monotonic(), why)
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
                raise self._unavailable(exc, why) from None
            self._pool = pool
            return pool

    async def _fetch(self, sql: str, params: dict[str, Any] | Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        pool = await self._open()
        self.tracker.round_trip()
        started = time.perf_counter()
        try:
            async with pool.connection(timeout=self._wait_s) as conn:
                cur = await conn.execute(sql, params)
                rows = await cur.fetchall() if cur.description is not None else []
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
            # The pool's own errors (PoolTimeout, TooManyRequests) say only "no connection".
            why = await self._why_no_connection(pool) if type(exc).__module__.startswith("psycopg_pool") else None
            raise self._unavailable(exc, why) from None
        finally:
            self.tracker.busy(time.perf_counter() - started)
        self.tracker.ok(self._clock())
        return rows

    # --- keys ----------------------------------------------------------------------
    @staticmethod
    def _record(row: Sequence[Any]) -> KeyRecord:
        key, _, state, fingerprint, owner, result, stored_at, lease_left = row[:8]
        return KeyRecord(key=key, state=state, fingerprint=fingerprint, owner=owner,
                         result=None if result is None else bytes(result), stored_at=stored_at,
                         lease_left_s=lease_left)

    async def claim_keys(self, capability: str, claims: Sequence[KeyClaim], owner: str, lease_s: float,
                         fresh_after: float) -> Claims:
        lost: dict[str, KeyRecord] = {}
        resumed: list[str] = []
        for redeliver in (False, True):
            wanted = {c.key: c for c in claims if c.redeliver is redeliver}
            for _ in range(DECIDE_ROUNDS):
                if not wanted:
                    break
                rows = await self._fetch(CLAIM[redeliver], {
                    "ns": self.namespace, "cap": capability, "owner": owner, "lease": lease_s, "fresh": fresh_after,
                    "rows": rows_json([{"key": c.key, "fingerprint": c.fingerprint} for c in wanted.values()])})
                for row in rows:
                    if not row[1]:
                        lost[row[0]] = self._record(row)
                    elif not row[8]:
                        resumed.append(row[0])
                    wanted.pop(row[0], None)
            if wanted:
                raise self._unavailable(RuntimeError(f"could not decide the claims of {len(wanted)} key(s)"))
        return Claims(lost=lost, resumed=resumed)

    async def get_keys(self, capability: str, keys: Sequence[str]) -> dict[str, KeyRecord]:
        rows = await self._fetch(
            f"SELECT k.key, false, state, fingerprint, owner, result, stored_at, lease_until - {NOW} "
            "FROM unnest(%s::text[]) AS i(key) JOIN aicmo_keys k ON k.namespace = %s AND k.capability = %s "
            "AND k.key = i.key", (list(dict.fromkeys(keys)), self.namespace, capability))
        return {row[0]: self._record(row) for row in rows}

    async def finish_keys(self, capability: str, owner: str, rows: Sequence[tuple[str, bytes | None, str | None]],
                          now: float) -> None:
        stored = {key: (result, fp) for key, result, fp in rows if result is not None}
        dropped = list(dict.fromkeys(key for key, result, _ in rows if result is None))
        base = {"ns": self.namespace, "cap": capability, "owner": owner}
        if stored:
            await self._fetch(FINISH_STORE, {**base, "now": now, "rows": rows_json([
                {"key": key, "result": result, "fp": fp} for key, (result, fp) in stored.items()])})
        if dropped:
            await self._fetch(FINISH_DROP, {**base, "keys": dropped})

    async def release_claims(self, owner_prefix: str) -> int:
        [(n,)] = await self._fetch(RELEASE, {"ns": self.namespace, "prefix": owner_prefix})
        return int(n)

    async def expire_keys(self, before: float) -> int:
        rows = await self._fetch("WITH gone AS (DELETE FROM aicmo_keys WHERE namespace = %s AND state = 'done' "
                                 "AND stored_at < %s RETURNING 1) SELECT count(*) FROM gone", (self.namespace, before))
        return int(rows[0][0])

    # --- journal -------------------------------------------------------------------
    @staticmethod
    def _entry(row: Sequence[Any]) -> JournalEntry:
        fields = dict(zip(JOURNAL_COLUMNS, row, strict=True))
        fields["value"] = unblob(fields["value"])
        return JournalEntry(**fields)

    async def journal_claim(self, entries: Sequence[JournalEntry]) -> dict[str, JournalEntry]:
        if not entries:
            return {}
        capability, provider = entries[0].capability, entries[0].provider
        wanted = {e.key: e for e in entries}
        taken: dict[str, JournalEntry] = {}
        for _ in range(DECIDE_ROUNDS):
            rows = await self._fetch(JOURNAL_CLAIM, {
                "ns": self.namespace, "cap": capability, "prov": provider, "rows": rows_json([
                    {"key": e.key, "request_id": e.request_id, "method": e.method, "incarnation": e.incarnation,
                     "updated_at": e.updated_at} for e in wanted.values()])})
            for key, won, request_id, method, state, incarnation, updated_at, value, error in rows:
                if not won:
                    taken[key] = JournalEntry(capability=capability, provider=provider, key=key, request_id=request_id,
                                              method=method, state=state, incarnation=incarnation,
                                              updated_at=updated_at, value=unblob(value), error=error)
                wanted.pop(key, None)
            if not wanted:
                return taken
        raise self._unavailable(RuntimeError(f"could not decide the journal claims of {len(wanted)} key(s)"))

    async def journal_find_many(self, capability: str, keys: Sequence[str],
                                provider: str | None = None) -> dict[str, list[JournalEntry]]:
        # Joined with the keys, so the planner walks the primary key whatever its statistics say.
        sql = (f"SELECT {', '.join('j.' + c for c in JOURNAL_COLUMNS)} FROM unnest(%s::text[]) AS i(key) "
               "JOIN aicmo_journal j ON j.namespace = %s AND j.capability = %s AND j.key = i.key")
        params: tuple[Any, ...] = (list(dict.fromkeys(keys)), self.namespace, capability)
        if provider is not None:
            sql, params = sql + " AND j.provider = %s", (*params, provider)
        found: dict[str, list[JournalEntry]] = {}
        for row in await self._fetch(sql, params):
            entry = self._entry(row)
            found.setdefault(entry.key, []).append(entry)
        return found

    async def journal_put_many(self, entries: Sequence[JournalEntry]) -> None:
        latest = list({(e.capability, e.provider, e.key): e for e in entries}.values())  # one row per key
        if not latest:
            return
        await self._fetch(JOURNAL_PUT, {"ns": self.namespace, "rows": rows_json([
            {"capability": e.capability, "provider": e.provider, "key": e.key, "request_id": e.request_id,
             "method": e.method, "state": e.state, "incarnation": e.incarnation, "updated_at": e.updated_at,
             "value": blob(e.value), "error": e.error} for e in latest])})

    # --- outbox --------------------------------------------------------------------
    async def outbox_add(self, *, capability: str, method: str, payload: dict[str, Any], idempotency_key: str,
                         request_id: str, reason: OutboxReason, now: float, provider: str | None = None,
                         error: str | None = None) -> OutboxItem:
        state = "pending" if reason == "queued" else "parked"
        for _ in range(DECIDE_ROUNDS):
            rows = await self._fetch(
                f"INSERT INTO aicmo_outbox (namespace, capability, method, payload, idempotency_key, request_id, state, "
                f"reason, created_at, updated_at, provider, error) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                f"ON CONFLICT (namespace, capability, idempotency_key) WHERE state IN ('pending', 'parked') "
                f"DO NOTHING RETURNING {OUTBOX}",
                (self.namespace, capability, method, encode(payload), idempotency_key, request_id, state, reason,
                 now, now, provider, error))
            if not rows:  # the key has a live item: that one is this request
                rows = await self._fetch(
                    f"SELECT {OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND capability = %s "
                    "AND idempotency_key = %s AND state IN ('pending', 'parked')",
                    (self.namespace, capability, idempotency_key))
            if rows:
                return outbox_item(rows[0])
        raise self._unavailable(RuntimeError("the outbox item was neither added nor found"))

    async def outbox_get(self, item_id: int) -> OutboxItem | None:
        rows = await self._fetch(f"SELECT {OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND id = %s",
                                 (self.namespace, item_id))
        return outbox_item(rows[0]) if rows else None

    async def outbox_find(self, capability: str, key: str) -> OutboxItem | None:
        rows = await self._fetch(f"SELECT {OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND capability = %s "
                                 "AND idempotency_key = %s ORDER BY id DESC LIMIT 1", (self.namespace, capability, key))
        return outbox_item(rows[0]) if rows else None

    async def outbox_list(self, capability: str | None = None, states: tuple[str, ...] = ("pending", "parked"),
                          limit: int = 1000) -> list[OutboxItem]:
        sql = f"SELECT {OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND state = ANY(%s)"
        params: tuple[Any, ...] = (self.namespace, list(states))
        if capability is not None:
            sql, params = sql + " AND capability = %s", (*params, capability)
        return [outbox_item(r) for r in await self._fetch(sql + " ORDER BY id LIMIT %s", (*params, limit))]

    async def outbox_update(self, item_id: int, now: float, **fields: Any) -> OutboxItem | None:
        unknown = set(fields) - OUTBOX_FIELDS
        if unknown:
            raise ValueError(f"unknown outbox fields {sorted(unknown)}")
        sets = "".join(f"{name} = %s, " for name in fields)  # names checked against OUTBOX_FIELDS above
        values = [blob(v) if k in ("payload", "result") else v for k, v in fields.items()]
        rows = await self._fetch(f"UPDATE aicmo_outbox SET {sets}updated_at = %s, lease_owner = NULL, "
                                 f"lease_until = NULL WHERE namespace = %s AND id = %s RETURNING {OUTBOX}",
                                 (*values, now, self.namespace, item_id))
        return outbox_item(rows[0]) if rows else None

    async def outbox_lease(self, capability: str, owner: str, lease_s: float, limit: int,
                           ids: Sequence[int] | None = None) -> list[OutboxItem]:
        only = "AND id = ANY(%(ids)s)" if ids is not None else ""
        rows = await self._fetch(
            f"""WITH now_ AS (SELECT {NOW} AS t),
            picked AS (SELECT id FROM aicmo_outbox, now_ WHERE namespace = %(ns)s AND capability = %(cap)s
                       AND state = 'pending' AND (lease_until IS NULL OR lease_until <= now_.t) {only}
                       ORDER BY id LIMIT %(limit)s FOR UPDATE OF aicmo_outbox SKIP LOCKED)
            UPDATE aicmo_outbox o SET lease_owner = %(owner)s, lease_until = (SELECT t FROM now_) + %(lease)s
            FROM picked WHERE o.id = picked.id
            RETURNING {', '.join('o.' + c for c in OUTBOX_COLUMNS)}""",
            {"ns": self.namespace, "cap": capability, "owner": owner, "lease": lease_s, "limit": limit,
             "ids": list(ids or [])})
        return sorted((outbox_item(r) for r in rows), key=lambda item: item.id)

    async def outbox_release(self, ids: Sequence[int], owner: str) -> None:
        if ids:
            await self._fetch("UPDATE aicmo_outbox SET lease_owner = NULL, lease_until = NULL WHERE namespace = %s "
                              "AND id = ANY(%s) AND lease_owner = %s", (self.namespace, list(ids), owner))

    async def outbox_counts(self) -> dict[tuple[str, str], int]:
        rows = await self._fetch("SELECT capability, state, count(*) FROM aicmo_outbox WHERE namespace = %s "
                                 "AND state IN ('pending', 'parked') GROUP BY capability, state", (self.namespace,))
        return {(cap, state): int(n) for cap, state, n in rows}

    # --- gateway-wide ----------------------------------------------------------------
    async def secret(self, name: str) -> bytes:
        for _ in range(DECIDE_ROUNDS):
            await self._fetch("INSERT INTO aicmo_secrets (namespace, name, value, created_at) VALUES (%s, %s, %s, %s) "
                              "ON CONFLICT DO NOTHING", (self.namespace, name, random_bytes.token_bytes(32),
                                                         self._clock()))
            rows = await self._fetch("SELECT value FROM aicmo_secrets WHERE namespace = %s AND name = %s",
                                     (self.namespace, name))
            if rows:
                return bytes(rows[0][0])
        raise self._unavailable(RuntimeError(f"the secret {name!r} was neither made nor found"))

    async def put_marker(self, token: str, node: str) -> None:
        await self._fetch("INSERT INTO aicmo_markers (token, node, created_at) VALUES (%s, %s, %s) "
                          "ON CONFLICT (token) DO UPDATE SET node = excluded.node", (token, node, self._clock()))

    async def find_marker(self, token: str) -> str | None:
        rows = await self._fetch("SELECT node FROM aicmo_markers WHERE token = %s", (token,))
        return rows[0][0] if rows else None

    async def prune(self, *, journal_before: float, outbox_before: float) -> dict[str, int]:
        [(journal, outbox)] = await self._fetch(
            """WITH j AS (DELETE FROM aicmo_journal WHERE namespace = %(ns)s AND state IN ('delivered', 'failed')
                          AND updated_at < %(journal)s RETURNING 1),
                    o AS (DELETE FROM aicmo_outbox WHERE namespace = %(ns)s AND state IN ('delivered', 'dropped')
                          AND updated_at < %(outbox)s RETURNING 1),
                    m AS (DELETE FROM aicmo_markers WHERE created_at < %(markers)s RETURNING 1)
               SELECT (SELECT count(*) FROM j), (SELECT count(*) FROM o)""",
            {"ns": self.namespace, "journal": journal_before, "outbox": outbox_before,
             "markers": self._clock() - 3600})
        return {"journal": int(journal), "outbox": int(outbox), "spend": await self.prune_spend()}

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    def health(self) -> StoreHealth:
        return self.tracker.snapshot()

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
