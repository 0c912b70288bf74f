"""The SQL of the PostgreSQL store (postgres.py): its statements, how rows
travel (msgpack blobs, many rows as one JSON parameter), and the schema
migration run under an advisory lock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from actors.durable.schema import PG_MIGRATIONS, PG_VERSION
from actors.durable.store import OutboxItem

__all__ = ["CLAIM", "DECIDE_ROUNDS", "FINISH_DROP", "FINISH_STORE", "JOURNAL", "JOURNAL_CLAIM", "JOURNAL_COLUMNS",
           "JOURNAL_PUT", "MIGRATION_LOCK", "NOW", "OUTBOX", "OUTBOX_COLUMNS", "RELEASE", "blob", "claim_sql",
           "decode", "encode", "migrate", "outbox_item", "rows_json", "unblob"]

encode = msgspec.msgpack.Encoder().encode
decode = msgspec.msgpack.Decoder().decode

# pg_advisory_xact_lock's key for schema migrations: actors starting together migrate once.
MIGRATION_LOCK = 0x61_69_63_6D_6F  # "aicmo"
NOW = "extract(epoch from clock_timestamp())::float8"
OUTBOX_COLUMNS = ("id", "capability", "method", "payload", "idempotency_key", "request_id", "state", "reason",
                   "created_at", "updated_at", "provider", "error", "attempts", "result", "lease_owner")
OUTBOX = ", ".join(OUTBOX_COLUMNS)
JOURNAL_COLUMNS = ("capability", "provider", "key", "request_id", "method", "state", "incarnation", "updated_at",
                    "value", "error")
JOURNAL = ", ".join(JOURNAL_COLUMNS)
# How often a key that was neither won nor seen (a competing insert committed
# during the statement) is asked about again before we give up on the store.
DECIDE_ROUNDS = 5


def claim_sql(redeliver: bool) -> str:
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
    WITH now_ AS (SELECT {NOW} AS t),
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


CLAIM = {False: claim_sql(False), True: claim_sql(True)}

JOURNAL_CLAIM = """
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

JOURNAL_PUT = f"""
    INSERT INTO aicmo_journal AS j (namespace, {JOURNAL})
    SELECT %(ns)s, capability, provider, key, request_id, method, state, incarnation, updated_at,
           decode(value, 'base64'), error
    FROM json_to_recordset(%(rows)s::json) AS i(capability text, provider text, key text, request_id text,
                                                 method text, state text, incarnation text, updated_at float8,
                                                 value text, error text)
    ORDER BY i.capability, i.key, i.provider
    ON CONFLICT (namespace, capability, key, provider) DO UPDATE SET request_id = excluded.request_id,
        method = excluded.method, state = excluded.state, incarnation = excluded.incarnation,
        updated_at = excluded.updated_at, value = excluded.value, error = excluded.error"""

FINISH_STORE = """
    INSERT INTO aicmo_keys AS k (namespace, capability, key, state, fingerprint, owner, lease_until, result, stored_at)
    SELECT %(ns)s, %(cap)s, i.key, 'done', i.fp, NULL, NULL, decode(i.result, 'base64'), %(now)s
    FROM json_to_recordset(%(rows)s::json) AS i(key text, result text, fp text) ORDER BY i.key
    ON CONFLICT (namespace, capability, key) DO UPDATE SET state = 'done', owner = NULL, lease_until = NULL,
        result = excluded.result, stored_at = excluded.stored_at,
        fingerprint = coalesce(k.fingerprint, excluded.fingerprint)
    WHERE k.owner = %(owner)s"""

# A claim that ends without a result: dropped, or, where a redelivery took
# over a stored result, that result put back. The two touch disjoint rows.
FINISH_DROP = """
    WITH dropped AS (DELETE FROM aicmo_keys k USING unnest(%(keys)s::text[]) AS i(key)
                     WHERE k.namespace = %(ns)s AND k.capability = %(cap)s AND k.key = i.key
                       AND k.owner = %(owner)s AND k.result IS NULL RETURNING k.key)
    UPDATE aicmo_keys k SET state = 'done', owner = NULL, lease_until = NULL FROM unnest(%(keys)s::text[]) AS i(key)
    WHERE k.namespace = %(ns)s AND k.capability = %(cap)s AND k.key = i.key AND k.owner = %(owner)s
      AND k.result IS NOT NULL"""

RELEASE = """
    WITH ended AS (UPDATE aicmo_keys SET lease_until = 0 WHERE namespace = %(ns)s AND state = 'running'
                   AND starts_with(owner, %(prefix)s) RETURNING key)
    SELECT count(*) FROM ended"""


# Many rows go to the server as one JSON document (bytes as base64): one
# parameter, encoded by msgspec, instead of an array per column dumped in Python.
_json_rows = msgspec.json.Encoder().encode


def rows_json(rows: list[dict[str, Any]]) -> str:
    return _json_rows(rows).decode()


def blob(value: Any) -> bytes | None:
    return None if value is None else encode(value)


def unblob(value: bytes | None) -> Any:
    return None if value is None else decode(bytes(value))


def outbox_item(row: Sequence[Any]) -> OutboxItem:
    fields = dict(zip(OUTBOX_COLUMNS, row, strict=True))
    fields["payload"] = unblob(fields["payload"])
    fields["result"] = unblob(fields["result"])
    return OutboxItem(**fields)




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
