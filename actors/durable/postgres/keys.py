"""Idempotency keys in PostgreSQL: claims and first results (store.py:
claim_keys, get_keys, finish_keys, release_claims, expire_keys).

A claim is one statement whose outcome the database decides: an
`INSERT ... ON CONFLICT DO UPDATE ... WHERE` that takes a key only when no
one else holds it, returning which keys were won. Leases are set and
compared on the server's clock (`clock_timestamp()`).

A key whose competing insert commits while our statement runs is neither
won nor visible to it (the statement's snapshot predates it); such keys are
asked about again, so every key comes back decided."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors.durable.batches import in_batches
from actors.durable.postgres.pool import PostgresRunner
from actors.durable.postgres.sql import DECIDE_ROUNDS, NOW, rows_json
from actors.durable.store import Claims, KeyClaim, KeyRecord

__all__ = ["CLAIM", "FINISH_DROP", "FINISH_STORE", "RELEASE", "PostgresKeys", "claim_sql"]


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

# One batch of expired results; rows another transaction holds are left for the next round.
EXPIRE_BATCH = """
    WITH gone AS (DELETE FROM aicmo_keys WHERE (namespace, capability, key) IN (
                      SELECT namespace, capability, key FROM aicmo_keys WHERE namespace = %s AND state = 'done'
                      AND stored_at < %s LIMIT %s FOR UPDATE SKIP LOCKED)
                  AND state = 'done' RETURNING 1)
    SELECT count(*) FROM gone"""


def _record(row: Sequence[Any]) -> KeyRecord:
    key, _, state, fingerprint, owner, result, stored_at, lease_left = row[:8]
    return KeyRecord(key=key, state=state, fingerprint=fingerprint, owner=owner,
                     result=None if result is None else bytes(result), stored_at=stored_at,
                     lease_left_s=lease_left)


class PostgresKeys:
    def __init__(self, db: PostgresRunner):
        self._db = db

    async def claim(self, capability: str, claims: Sequence[KeyClaim], owner: str, lease_s: float,
                    fresh_after: float) -> Claims:
        lost: dict[str, KeyRecord] = {}
        resumed: list[str] = []
        for redeliver in (False, True):
            wanted = {c.key: c for c in claims if c.redeliver is redeliver}
            for _ in range(DECIDE_ROUNDS):
                if not wanted:
                    break
                rows = await self._db.fetch(CLAIM[redeliver], {
                    "ns": self._db.namespace, "cap": capability, "owner": owner, "lease": lease_s,
                    "fresh": fresh_after,
                    "rows": rows_json([{"key": c.key, "fingerprint": c.fingerprint} for c in wanted.values()])})
                for row in rows:
                    if not row[1]:
                        lost[row[0]] = _record(row)
                    elif not row[8]:
                        resumed.append(row[0])
                    wanted.pop(row[0], None)
            if wanted:
                raise self._db.unavailable(RuntimeError(f"could not decide the claims of {len(wanted)} key(s)"))
        return Claims(lost=lost, resumed=resumed)

    async def get(self, capability: str, keys: Sequence[str]) -> dict[str, KeyRecord]:
        rows = await self._db.fetch(
            f"SELECT k.key, false, state, fingerprint, owner, result, stored_at, lease_until - {NOW} "
            "FROM unnest(%s::text[]) AS i(key) JOIN aicmo_keys k ON k.namespace = %s AND k.capability = %s "
            "AND k.key = i.key", (list(dict.fromkeys(keys)), self._db.namespace, capability))
        return {row[0]: _record(row) for row in rows}

    async def finish(self, capability: str, owner: str, rows: Sequence[tuple[str, bytes | None, str | None]],
                     now: float) -> None:
        stored = {key: (result, fp) for key, result, fp in rows if result is not None}
        dropped = list(dict.fromkeys(key for key, result, _ in rows if result is None))
        base = {"ns": self._db.namespace, "cap": capability, "owner": owner}
        if stored:
            await self._db.fetch(FINISH_STORE, {**base, "now": now, "rows": rows_json([
                {"key": key, "result": result, "fp": fp} for key, (result, fp) in stored.items()])})
        if dropped:
            await self._db.fetch(FINISH_DROP, {**base, "keys": dropped})

    async def release(self, owner_prefix: str) -> int:
        [(n,)] = await self._db.fetch(RELEASE, {"ns": self._db.namespace, "prefix": owner_prefix})
        return int(n)

    async def expire(self, before: float) -> int:
        """A batch per statement (actors/durable/batches.py): one pooled connection held briefly."""
        async def batch(n: int) -> int:
            [(gone,)] = await self._db.fetch(EXPIRE_BATCH, (self._db.namespace, before, n))
            return int(gone)
        return await in_batches(batch)
