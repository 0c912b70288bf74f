"""Each provider's delivery journal in PostgreSQL (store.py: journal_claim,
journal_find_many, journal_put_many). A claim is one statement that writes
`started` only where the key has no entry at the provider, or one that
failed, and returns the entries it found instead; keys a racing insert
hid are asked about again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors.durable.postgres.pool import PostgresRunner
from actors.durable.postgres.spend import SPEND_ADD, spend_rows
from actors.durable.postgres.sql import DECIDE_ROUNDS, rows_json
from actors.durable.rows import JOURNAL_COLUMNS, blob, journal_entry, unblob
from actors.durable.store import JournalEntry, SpendDelta

__all__ = ["JOURNAL_CLAIM", "JOURNAL_PUT", "JOURNAL_PUT_CHARGED", "PostgresJournal"]

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
    INSERT INTO aicmo_journal AS j (namespace, {", ".join(JOURNAL_COLUMNS)})
    SELECT %(ns)s, capability, provider, key, request_id, method, state, incarnation, updated_at,
           decode(value, 'base64'), error
    FROM json_to_recordset(%(rows)s::json) AS i(capability text, provider text, key text, request_id text,
                                                 method text, state text, incarnation text, updated_at float8,
                                                 value text, error text)
    ORDER BY i.capability, i.key, i.provider
    ON CONFLICT (namespace, capability, key, provider) DO UPDATE SET request_id = excluded.request_id,
        method = excluded.method, state = excluded.state, incarnation = excluded.incarnation,
        updated_at = excluded.updated_at, value = excluded.value, error = excluded.error"""

# Outcomes and what their sends cost in one statement (so one transaction): a
# process lost right after cannot have journaled a delivery without its charge.
JOURNAL_PUT_CHARGED = ("WITH journaled AS (" + JOURNAL_PUT + " RETURNING 1), "
                       + SPEND_ADD.replace("%(rows)s", "%(spend)s").strip().removeprefix("WITH ")
                       + ", (SELECT count(*) FROM journaled)")


class PostgresJournal:
    def __init__(self, db: PostgresRunner):
        self._db = db

    async def claim(self, entries: Sequence[JournalEntry]) -> dict[str, JournalEntry]:
        if not entries:
            return {}
        capability, provider = entries[0].capability, entries[0].provider
        wanted = {e.key: e for e in entries}
        taken: dict[str, JournalEntry] = {}
        for _ in range(DECIDE_ROUNDS):
            rows = await self._db.fetch(JOURNAL_CLAIM, {
                "ns": self._db.namespace, "cap": capability, "prov": provider, "rows": rows_json([
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
        raise self._db.unavailable(RuntimeError(f"could not decide the journal claims of {len(wanted)} key(s)"))

    async def find_many(self, capability: str, keys: Sequence[str],
                        provider: str | None = None) -> dict[str, list[JournalEntry]]:
        # Joined with the keys, so the planner walks the primary key whatever its statistics say.
        sql = (f"SELECT {', '.join('j.' + c for c in JOURNAL_COLUMNS)} FROM unnest(%s::text[]) AS i(key) "
               "JOIN aicmo_journal j ON j.namespace = %s AND j.capability = %s AND j.key = i.key")
        params: tuple[Any, ...] = (list(dict.fromkeys(keys)), self._db.namespace, capability)
        if provider is not None:
            sql, params = sql + " AND j.provider = %s", (*params, provider)
        found: dict[str, list[JournalEntry]] = {}
        for row in await self._db.fetch(sql, params):
            entry = journal_entry(row)
            found.setdefault(entry.key, []).append(entry)
        return found

    async def put_many(self, entries: Sequence[JournalEntry], spend: Sequence[SpendDelta] = ()) -> None:
        latest = list({(e.capability, e.provider, e.key): e for e in entries}.values())  # one row per key
        if not latest:
            return
        params = {"ns": self._db.namespace, "rows": rows_json([
            {"capability": e.capability, "provider": e.provider, "key": e.key, "request_id": e.request_id,
             "method": e.method, "state": e.state, "incarnation": e.incarnation, "updated_at": e.updated_at,
             "value": blob(e.value), "error": e.error} for e in latest])}
        if not spend:
            await self._db.fetch(JOURNAL_PUT, params)
            return
        await self._db.fetch(JOURNAL_PUT_CHARGED, {**params, "spend": spend_rows(spend)})
