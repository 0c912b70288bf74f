"""Idempotency keys in SQLite: claims and first results (store.py:
claim_keys, get_keys, finish_keys, release_claims, expire_keys).

A claim is one write transaction: the keys' records are read and written
under SQLite's single write lock, so no other process decides the same key
in between. Leases are measured on the store's clock."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from actors.durable.batches import in_batches
from actors.durable.sqlite.connection import SqliteRunner, chunks, marks
from actors.durable.store import Claims, KeyClaim, KeyRecord

__all__ = ["SqliteKeys"]

_KEY_COLUMNS = "key, state, fingerprint, owner, result, stored_at, lease_until"


def _record(row: tuple[Any, ...], now: float) -> KeyRecord:
    key, state, fingerprint, owner, result, stored_at, lease_until = row
    left = None if lease_until is None else lease_until - now
    return KeyRecord(key=key, state=state, fingerprint=fingerprint, owner=owner, result=result,
                     stored_at=stored_at, lease_left_s=left)


class SqliteKeys:
    def __init__(self, db: SqliteRunner):
        self._db = db

    async def claim(self, capability: str, claims: Sequence[KeyClaim], owner: str, lease_s: float,
                    fresh_after: float) -> Claims:
        return await self._db.write(self._claim, capability, claims, owner, lease_s, fresh_after)

    async def get(self, capability: str, keys: Sequence[str]) -> dict[str, KeyRecord]:
        return await self._db.read(self._get, capability, keys)

    async def finish(self, capability: str, owner: str, rows: Sequence[tuple[str, bytes | None, str | None]],
                     now: float) -> None:
        await self._db.write(self._finish, capability, owner, rows, now)

    async def release(self, owner_prefix: str) -> int:
        escaped = owner_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return await self._db.write(lambda db: db.execute(
            "UPDATE keys SET lease_until=0 WHERE namespace=? AND state='running' AND owner LIKE ? ESCAPE '\\'",
            (self._db.namespace, escaped + "%")).rowcount)

    async def expire(self, before: float) -> int:
        """A batch per transaction (actors/durable/batches.py): claims wait for none of it for long."""
        return await in_batches(lambda batch: self._db.write(lambda db: db.execute(
            "DELETE FROM keys WHERE rowid IN (SELECT rowid FROM keys WHERE namespace=? AND state='done' "
            "AND stored_at<? LIMIT ?)", (self._db.namespace, before, batch)).rowcount))

    # --- on the store's thread ---------------------------------------------------------
    def _rows(self, db: sqlite3.Connection, capability: str, keys: Sequence[str]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for chunk in chunks(list(dict.fromkeys(keys))):
            rows += db.execute(f"SELECT {_KEY_COLUMNS} FROM keys WHERE namespace=? AND capability=? AND key IN "
                               f"({marks(len(chunk))})", (self._db.namespace, capability, *chunk)).fetchall()
        return rows

    def _claim(self, db: sqlite3.Connection, capability: str, claims: Sequence[KeyClaim], owner: str, lease_s: float,
               fresh_after: float) -> Claims:
        ns = self._db.namespace
        lost: dict[str, KeyRecord] = {}
        resumed: list[str] = []
        now = self._db.now()
        found = {row[0]: row for row in self._rows(db, capability, [c.key for c in claims])}
        for claim in claims:
            row = found.get(claim.key)
            if row is None:
                db.execute("INSERT INTO keys (namespace, capability, key, state, fingerprint, owner, lease_until, "
                           "result, stored_at) VALUES (?,?,?,'running',?,?,?,NULL,?)",
                           (ns, capability, claim.key, claim.fingerprint, owner, now + lease_s, now))
                found[claim.key] = (claim.key, "running", claim.fingerprint, owner, None, now, now + lease_s)
                continue
            _, state, _, holder, result, stored_at, lease_until = row
            if state == "done":
                claimable = claim.redeliver or stored_at < fresh_after
                keep = result if claim.redeliver else None
            else:  # running: ours, or its holder is gone
                claimable = holder == owner or lease_until <= now
                keep = result
            if not claimable:
                lost[claim.key] = _record(row, now)
                continue
            db.execute("UPDATE keys SET state='running', fingerprint=?, owner=?, lease_until=?, result=? "
                       "WHERE namespace=? AND capability=? AND key=?",
                       (claim.fingerprint, owner, now + lease_s, keep, ns, capability, claim.key))
            found[claim.key] = (claim.key, "running", claim.fingerprint, owner, keep, stored_at, now + lease_s)
            resumed.append(claim.key)
        return Claims(lost=lost, resumed=resumed)

    def _get(self, db: sqlite3.Connection, capability: str, keys: Sequence[str]) -> dict[str, KeyRecord]:
        now = self._db.now()
        return {row[0]: _record(row, now) for row in self._rows(db, capability, keys)}

    def _finish(self, db: sqlite3.Connection, capability: str, owner: str,
                rows: Sequence[tuple[str, bytes | None, str | None]], now: float) -> None:
        ns = self._db.namespace
        where = "namespace=? AND capability=? AND key=? AND owner=?"
        for key, result, fingerprint in rows:
            if result is not None:
                db.execute("INSERT INTO keys (namespace, capability, key, state, fingerprint, owner, lease_until, "
                           "result, stored_at) VALUES (?,?,?,'done',?,NULL,NULL,?,?) "
                           "ON CONFLICT (namespace, capability, key) DO UPDATE SET state='done', owner=NULL, "
                           "lease_until=NULL, result=excluded.result, stored_at=excluded.stored_at, "
                           "fingerprint=coalesce(keys.fingerprint, excluded.fingerprint) WHERE keys.owner=?",
                           (ns, capability, key, fingerprint, result, now, owner))
            else:
                args = (ns, capability, key, owner)
                db.execute(f"DELETE FROM keys WHERE {where} AND result IS NULL", args)
                db.execute(f"UPDATE keys SET state='done', owner=NULL, lease_until=NULL WHERE {where}", args)
