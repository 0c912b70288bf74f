"""Each provider's delivery journal in SQLite (store.py: journal_claim,
journal_find_many, journal_put_many; and pruning what ended)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from actors.durable.rows import JOURNAL_COLUMNS, blob, journal_entry
from actors.durable.sqlite.connection import SqliteRunner, chunks, marks
from actors.durable.sqlite.spend import SqliteSpend
from actors.durable.store import JournalEntry, SpendDelta

__all__ = ["SqliteJournal"]

_SELECT = f"SELECT {', '.join(JOURNAL_COLUMNS)} FROM journal WHERE namespace=? AND capability=?"
_PUT = ("INSERT OR REPLACE INTO journal (namespace, capability, provider, key, request_id, method, state, "
        "incarnation, updated_at, value, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)")


class SqliteJournal:
    def __init__(self, db: SqliteRunner, spend: SqliteSpend):
        self._db = db
        self._spend = spend

    async def claim(self, entries: Sequence[JournalEntry]) -> dict[str, JournalEntry]:
        """Writes `started` where a key has no entry at its provider, or one
        that failed; returns the entries of the keys it did not write."""
        if not entries:
            return {}
        return await self._db.write(self._claim, entries)

    async def find_many(self, capability: str, keys: Sequence[str],
                        provider: str | None = None) -> dict[str, list[JournalEntry]]:
        return await self._db.read(self._find, capability, keys, provider)

    async def put_many(self, entries: Sequence[JournalEntry], spend: Sequence[SpendDelta] = ()) -> None:
        """The entries, and what their sends cost, in one transaction."""
        await self._db.write(self._put_many, entries, list(spend))

    def prune(self, db: sqlite3.Connection, before: float, batch: int) -> int:
        """In the caller's transaction: deletes up to `batch` entries that
        ended (delivered, failed) before `before`; those still in doubt stay."""
        return db.execute("DELETE FROM journal WHERE rowid IN (SELECT rowid FROM journal WHERE namespace=? "
                          "AND state IN ('delivered','failed') AND updated_at<? LIMIT ?)",
                          (self._db.namespace, before, batch)).rowcount

    # --- on the store's thread ---------------------------------------------------------
    def _row(self, e: JournalEntry) -> tuple[Any, ...]:
        return (self._db.namespace, e.capability, e.provider, e.key, e.request_id, e.method, e.state, e.incarnation,
                e.updated_at, blob(e.value), e.error)

    def _find(self, db: sqlite3.Connection, capability: str, keys: Sequence[str],
              provider: str | None) -> dict[str, list[JournalEntry]]:
        found: dict[str, list[JournalEntry]] = {}
        for chunk in chunks(list(dict.fromkeys(keys))):
            sql = _SELECT + f" AND key IN ({marks(len(chunk))})"
            args: tuple[Any, ...] = (self._db.namespace, capability, *chunk)
            if provider is not None:
                sql, args = sql + " AND provider=?", (*args, provider)
            for row in db.execute(sql, args).fetchall():
                entry = journal_entry(row)
                found.setdefault(entry.key, []).append(entry)
        return found

    def _put_many(self, db: sqlite3.Connection, entries: Sequence[JournalEntry], spend: list[SpendDelta]) -> None:
        db.executemany(_PUT, [self._row(e) for e in entries])
        self._spend.add_in(db, spend)

    def _claim(self, db: sqlite3.Connection, entries: Sequence[JournalEntry]) -> dict[str, JournalEntry]:
        capability, provider = entries[0].capability, entries[0].provider
        found = self._find(db, capability, [e.key for e in entries], provider)
        taken = {key: found_entries[0] for key, found_entries in found.items() if found_entries[0].state != "failed"}
        db.executemany(_PUT, [self._row(e) for e in entries if e.key not in taken])
        return taken
