"""What every actor of a gateway shares, in SQLite (store.py: secret,
put_marker, find_marker; and pruning old markers): the keys of keyed
hashes, made once, and the markers the shared-store check leaves
(actors/ops/shared_store.py)."""

from __future__ import annotations

import secrets
import sqlite3

from actors.durable.sqlite.connection import SqliteRunner
from actors.durable.store import MARKER_TTL_S

__all__ = ["SqliteShared"]


class SqliteShared:
    def __init__(self, db: SqliteRunner):
        self._db = db

    async def secret(self, name: str) -> bytes:
        return await self._db.write(self._secret, name)

    async def put_marker(self, token: str, node: str) -> None:
        await self._db.write(self._put_marker, token, node)

    async def find_marker(self, token: str) -> str | None:
        rows = await self._db.read(lambda db: db.execute("SELECT node FROM markers WHERE token=?",
                                                         (token,)).fetchall())
        return rows[0][0] if rows else None

    def prune(self, db: sqlite3.Connection) -> int:
        """In the caller's transaction: markers older than MARKER_TTL_S (of every namespace)."""
        return db.execute("DELETE FROM markers WHERE created_at<?", (self._db.now() - MARKER_TTL_S,)).rowcount

    def _put_marker(self, db: sqlite3.Connection, token: str, node: str) -> None:
        db.execute("INSERT OR REPLACE INTO markers (token, node, created_at) VALUES (?,?,?)",
                   (token, node, self._db.now()))

    def _secret(self, db: sqlite3.Connection, name: str) -> bytes:
        ns = self._db.namespace
        db.execute("INSERT INTO secrets (namespace, name, value, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                   (ns, name, secrets.token_bytes(32), self._db.now()))
        return db.execute("SELECT value FROM secrets WHERE namespace=? AND name=?", (ns, name)).fetchone()[0]
