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

import msgspec

from actors.durable.location import StoreLocation
from actors.durable.schema import PG_MIGRATIONS, PG_VERSION
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

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode

# pg_advisory_xact_lock's key for schema migrations: actors starting together migrate once.
_MIGRATION_LOCK = 0x61_69_63_6D_6F  # "aicmo"
_NOW = "extract(epoch from clock_timestamp())::float8"
_OUTBOX_COLUMNS = ("id", "capability", "method", "payload", "idempotency_key", "request_id", "state", "reason",
                   "created_at", "updated_at", "provider", "error", "attempts", "result", "lease_owner")
_OUTBOX = ", ".join(_OUTBOX_COLUMNS)
_JOURNAL_COLUMNS = ("capability", "provider", "key", "request_id", "method", "state", "incarnation", "updated_at",
                    "value", "error")
_JOURNAL = ", ".join(_JOURNAL_COLUMNS)
# How often a key that was neither won nor seen (a competing insert committed
# during the statement) is asked about again before we give up on the store.
_DECIDE_ROUNDS = 5


def _claim_sql(redeliver: bool) -> str:
    """One statement: claim the keys that are free, and return, for every key,
    whether it was won and, if not, the record that holds it. Rows are
    taken in key order, so two statements racing over the same keys wait for
    each other instead of deadlocking."""
    if redeliver:  # delivering from the outbox: take over a stored result, keep it
        takeover = "k.state = 'done' OR k.owner = excluded.owner OR k.lease_until <= excluded.stored_at"
        keep = "k.result"
    else:
        takeover = ("(k.state = 'done' AND k.stored_at < %(fresh)s) OR (k.state = 'running' AND "
                    "(k.owner = excluded.owner OR k.lease_until <= excluded.stored_at))")
        keep = "CASE WHEN k.state = 'done' THEN NULL ELSE k.result END"
    return f"""
    WITH now_ AS (SELECT {_NOW} AS t),
    input AS (SELECT * FROM json_to_recordset(%(rows)s::json) AS i(key text, fingerprint text)),
    claimed AS (
        INSERT INTO aicmo_keys AS k (namespace, capability, key, state, fingerprint, owner, lease_until, result,
                                     stored_at)
        SELECT %(ns)s, %(cap)s, input.key, 'running', input.fingerprint, %(owner)s, now_.t + %(lease)s, NULL, now_.t
        FROM input, now_ ORDER BY input.key
        ON CONFLICT (namespace, capability, key) DO UPDATE SET state = 'running', fingerprint = excluded.fingerprint,
            owner = excluded.owner, lease_until = excluded.lease_until, result = {keep}
        WHERE {takeover}
        RETURNING k.key, k.xmax = 0 AS fresh)
    SELECT key, true, NULL, NULL, NULL, NULL::bytea, NULL::float8, NULL::float8, fresh FROM claimed
    UNION ALL
    SELECT k.key, false, k.state, k.fingerprint, k.owner, k.result, k.stored_at, k.lease_until - now_.t, NULL::bool
    FROM input JOIN aicmo_keys k ON k.namespace = %(ns)s AND k.capability = %(cap)s AND k.key = input.key, now_
    WHERE input.key NOT IN (SELECT key FROM claimed)"""


_CLAIM = {False: _claim_sql(False), True: _claim_sql(True)}

_JOURNAL_CLAIM = """
    WITH input AS (SELECT * FROM json_to_recordset(%(rows)s::json)
                   AS i(key text, request_id text, method text, incarnation text, updated_at float8)),
    claimed AS (
        INSERT INTO aicmo_journal AS j (namespace, capability, provider, key, request_id, method, state, incarnation,
                                        updated_at, value, error)
        SELECT %(ns)s, %(cap)s, %(prov)s, key, request_id, method, 'started', incarnation, updated_at, NULL, NULL
        FROM input ORDER BY key
        ON CONFLICT (namespace, capability, key, provider) DO UPDATE SET request_id = excluded.request_id,
            method = excluded.method, state = 'started', incarnation = excluded.incarnation,
            updated_at = excluded.updated_at, value = NULL, error = NULL
        WHERE j.state = 'failed'
        RETURNING j.key)
    SELECT key, true, NULL, NULL, NULL, NULL, NULL::float8, NULL::bytea, NULL FROM claimed
    UNION ALL
    SELECT j.key, false, j.request_id, j.method, j.state, j.incarnation, j.updated_at, j.value, j.error
    FROM input JOIN aicmo_journal j ON j.namespace = %(ns)s AND j.capability = %(cap)s AND j.key = input.key
                                   AND j.provider = %(prov)s
    WHERE input.key NOT IN (SELECT key FROM claimed)"""

_JOURNAL_PUT = f"""
    INSERT INTO aicmo_journal AS j (namespace, {_JOURNAL})
    SELECT %(ns)s, capability, provider, key, request_id, method, state, incarnation, updated_at,
           decode(value, 'base64'), error
    FROM json_to_recordset(%(rows)s::json) AS i(capability text, provider text, key text, request_id text,
                                                 method text, state text, incarnation text, updated_at float8,
                                                 value text, error text)
    ORDER BY i.capability, i.key, i.provider
    ON CONFLICT (namespace, capability, key, provider) DO UPDATE SET request_id = excluded.request_id,
        method = excluded.method, state = excluded.state, incarnation = excluded.incarnation,
        updated_at = excluded.updated_at, value = excluded.value, error = excluded.error"""

_FINISH_STORE = """
    INSERT INTO aicmo_keys AS k (namespace, capability, key, state, fingerprint, owner, lease_until, result, stored_at)
    SELECT %(ns)s, %(cap)s, i.key, 'done', i.fp, NULL, NULL, decode(i.result, 'base64'), %(now)s
    FROM json_to_recordset(%(rows)s::json) AS i(key text, result text, fp text) ORDER BY i.key
    ON CONFLICT (namespace, capability, key) DO UPDATE SET state = 'done', owner = NULL, lease_until = NULL,
        result = excluded.result, stored_at = excluded.stored_at,
        fingerprint = coalesce(k.fingerprint, excluded.fingerprint)
    WHERE k.owner = %(owner)s"""

# A claim that ends without a result: dropped, or, where a redelivery took
# over a stored result, that result put back. The two touch disjoint rows.
_FINISH_DROP = """
    WITH dropped AS (DELETE FROM aicmo_keys k USING unnest(%(keys)s::text[]) AS i(key)
                     WHERE k.namespace = %(ns)s AND k.capability = %(cap)s AND k.key = i.key
                       AND k.owner = %(owner)s AND k.result IS NULL RETURNING k.key)
    UPDATE aicmo_keys k SET state = 'done', owner = NULL, lease_until = NULL FROM unnest(%(keys)s::text[]) AS i(key)
    WHERE k.namespace = %(ns)s AND k.capability = %(cap)s AND k.key = i.key AND k.owner = %(owner)s
      AND k.result IS NOT NULL"""

_RELEASE = """
    WITH ended AS (UPDATE aicmo_keys SET lease_until = 0 WHERE namespace = %(ns)s AND state = 'running'
                   AND starts_with(owner, %(prefix)s) RETURNING key)
    SELECT count(*) FROM ended"""


# Many rows go to the server as one JSON document (bytes as base64): one
# parameter, encoded by msgspec, instead of an array per column dumped in Python.
_json_rows = msgspec.json.Encoder().encode


def _json(rows: list[dict[str, Any]]) -> str:
    return _json_rows(rows).decode()


def _blob(value: Any) -> bytes | None:
    return None if value is None else _encode(value)


def _unblob(value: bytes | None) -> Any:
    return None if value is None else _decode(bytes(value))


def _item(row: Sequence[Any]) -> OutboxItem:
    fields = dict(zip(_OUTBOX_COLUMNS, row, strict=True))
    fields["payload"] = _unblob(fields["payload"])
    fields["result"] = _unblob(fields["result"])
    return OutboxItem(**fields)


class PostgresStore:
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
                    await _migrate(conn)
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
            for _ in range(_DECIDE_ROUNDS):
                if not wanted:
                    break
                rows = await self._fetch(_CLAIM[redeliver], {
                    "ns": self.namespace, "cap": capability, "owner": owner, "lease": lease_s, "fresh": fresh_after,
                    "rows": _json([{"key": c.key, "fingerprint": c.fingerprint} for c in wanted.values()])})
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
            f"SELECT k.key, false, state, fingerprint, owner, result, stored_at, lease_until - {_NOW} "
            "FROM unnest(%s::text[]) AS i(key) JOIN aicmo_keys k ON k.namespace = %s AND k.capability = %s "
            "AND k.key = i.key", (list(dict.fromkeys(keys)), self.namespace, capability))
        return {row[0]: self._record(row) for row in rows}

    async def finish_keys(self, capability: str, owner: str, rows: Sequence[tuple[str, bytes | None, str | None]],
                          now: float) -> None:
        stored = {key: (result, fp) for key, result, fp in rows if result is not None}
        dropped = list(dict.fromkeys(key for key, result, _ in rows if result is None))
        base = {"ns": self.namespace, "cap": capability, "owner": owner}
        if stored:
            await self._fetch(_FINISH_STORE, {**base, "now": now, "rows": _json([
                {"key": key, "result": result, "fp": fp} for key, (result, fp) in stored.items()])})
        if dropped:
            await self._fetch(_FINISH_DROP, {**base, "keys": dropped})

    async def release_claims(self, owner_prefix: str) -> int:
        [(n,)] = await self._fetch(_RELEASE, {"ns": self.namespace, "prefix": owner_prefix})
        return int(n)

    async def expire_keys(self, before: float) -> int:
        rows = await self._fetch("WITH gone AS (DELETE FROM aicmo_keys WHERE namespace = %s AND state = 'done' "
                                 "AND stored_at < %s RETURNING 1) SELECT count(*) FROM gone", (self.namespace, before))
        return int(rows[0][0])

    # --- journal -------------------------------------------------------------------
    @staticmethod
    def _entry(row: Sequence[Any]) -> JournalEntry:
        fields = dict(zip(_JOURNAL_COLUMNS, row, strict=True))
        fields["value"] = _unblob(fields["value"])
        return JournalEntry(**fields)

    async def journal_claim(self, entries: Sequence[JournalEntry]) -> dict[str, JournalEntry]:
        if not entries:
            return {}
        capability, provider = entries[0].capability, entries[0].provider
        wanted = {e.key: e for e in entries}
        taken: dict[str, JournalEntry] = {}
        for _ in range(_DECIDE_ROUNDS):
            rows = await self._fetch(_JOURNAL_CLAIM, {
                "ns": self.namespace, "cap": capability, "prov": provider, "rows": _json([
                    {"key": e.key, "request_id": e.request_id, "method": e.method, "incarnation": e.incarnation,
                     "updated_at": e.updated_at} for e in wanted.values()])})
            for key, won, request_id, method, state, incarnation, updated_at, value, error in rows:
                if not won:
                    taken[key] = JournalEntry(capability=capability, provider=provider, key=key, request_id=request_id,
                                              method=method, state=state, incarnation=incarnation,
                                              updated_at=updated_at, value=_unblob(value), error=error)
                wanted.pop(key, None)
            if not wanted:
                return taken
        raise self._unavailable(RuntimeError(f"could not decide the journal claims of {len(wanted)} key(s)"))

    async def journal_find_many(self, capability: str, keys: Sequence[str],
                                provider: str | None = None) -> dict[str, list[JournalEntry]]:
        # Joined with the keys, so the planner walks the primary key whatever its statistics say.
        sql = (f"SELECT {', '.join('j.' + c for c in _JOURNAL_COLUMNS)} FROM unnest(%s::text[]) AS i(key) "
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
        await self._fetch(_JOURNAL_PUT, {"ns": self.namespace, "rows": _json([
            {"capability": e.capability, "provider": e.provider, "key": e.key, "request_id": e.request_id,
             "method": e.method, "state": e.state, "incarnation": e.incarnation, "updated_at": e.updated_at,
             "value": _blob(e.value), "error": e.error} for e in latest])})

    # --- outbox --------------------------------------------------------------------
    async def outbox_add(self, *, capability: str, method: str, payload: dict[str, Any], idempotency_key: str,
                         request_id: str, reason: OutboxReason, now: float, provider: str | None = None,
                         error: str | None = None) -> OutboxItem:
        state = "pending" if reason == "queued" else "parked"
        for _ in range(_DECIDE_ROUNDS):
            rows = await self._fetch(
                f"INSERT INTO aicmo_outbox (namespace, capability, method, payload, idempotency_key, request_id, state, "
                f"reason, created_at, updated_at, provider, error) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                f"ON CONFLICT (namespace, capability, idempotency_key) WHERE state IN ('pending', 'parked') "
                f"DO NOTHING RETURNING {_OUTBOX}",
                (self.namespace, capability, method, _encode(payload), idempotency_key, request_id, state, reason,
                 now, now, provider, error))
            if not rows:  # the key has a live item: that one is this request
                rows = await self._fetch(
                    f"SELECT {_OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND capability = %s "
                    "AND idempotency_key = %s AND state IN ('pending', 'parked')",
                    (self.namespace, capability, idempotency_key))
            if rows:
                return _item(rows[0])
        raise self._unavailable(RuntimeError("the outbox item was neither added nor found"))

    async def outbox_get(self, item_id: int) -> OutboxItem | None:
        rows = await self._fetch(f"SELECT {_OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND id = %s",
                                 (self.namespace, item_id))
        return _item(rows[0]) if rows else None

    async def outbox_find(self, capability: str, key: str) -> OutboxItem | None:
        rows = await self._fetch(f"SELECT {_OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND capability = %s "
                                 "AND idempotency_key = %s ORDER BY id DESC LIMIT 1", (self.namespace, capability, key))
        return _item(rows[0]) if rows else None

    async def outbox_list(self, capability: str | None = None, states: tuple[str, ...] = ("pending", "parked"),
                          limit: int = 1000) -> list[OutboxItem]:
        sql = f"SELECT {_OUTBOX} FROM aicmo_outbox WHERE namespace = %s AND state = ANY(%s)"
        params: tuple[Any, ...] = (self.namespace, list(states))
        if capability is not None:
            sql, params = sql + " AND capability = %s", (*params, capability)
        return [_item(r) for r in await self._fetch(sql + " ORDER BY id LIMIT %s", (*params, limit))]

    async def outbox_update(self, item_id: int, now: float, **fields: Any) -> OutboxItem | None:
        unknown = set(fields) - OUTBOX_FIELDS
        if unknown:
            raise ValueError(f"unknown outbox fields {sorted(unknown)}")
        sets = "".join(f"{name} = %s, " for name in fields)  # names checked against OUTBOX_FIELDS above
        values = [_blob(v) if k in ("payload", "result") else v for k, v in fields.items()]
        rows = await self._fetch(f"UPDATE aicmo_outbox SET {sets}updated_at = %s, lease_owner = NULL, "
                                 f"lease_until = NULL WHERE namespace = %s AND id = %s RETURNING {_OUTBOX}",
                                 (*values, now, self.namespace, item_id))
        return _item(rows[0]) if rows else None

    async def outbox_lease(self, capability: str, owner: str, lease_s: float, limit: int,
                           ids: Sequence[int] | None = None) -> list[OutboxItem]:
        only = "AND id = ANY(%(ids)s)" if ids is not None else ""
        rows = await self._fetch(
            f"""WITH now_ AS (SELECT {_NOW} AS t),
            picked AS (SELECT id FROM aicmo_outbox, now_ WHERE namespace = %(ns)s AND capability = %(cap)s
                       AND state = 'pending' AND (lease_until IS NULL OR lease_until <= now_.t) {only}
                       ORDER BY id LIMIT %(limit)s FOR UPDATE OF aicmo_outbox SKIP LOCKED)
            UPDATE aicmo_outbox o SET lease_owner = %(owner)s, lease_until = (SELECT t FROM now_) + %(lease)s
            FROM picked WHERE o.id = picked.id
            RETURNING {', '.join('o.' + c for c in _OUTBOX_COLUMNS)}""",
            {"ns": self.namespace, "cap": capability, "owner": owner, "lease": lease_s, "limit": limit,
             "ids": list(ids or [])})
        return sorted((_item(r) for r in rows), key=lambda item: item.id)

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
        for _ in range(_DECIDE_ROUNDS):
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
        return {"journal": int(journal), "outbox": int(outbox)}

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    def health(self) -> StoreHealth:
        return self.tracker.snapshot()

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


async def _migrate(conn: Any) -> None:
    """Brings the database to the current schema under an advisory lock held
    for the transaction: actors that start together wait for the first."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
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
