"""What every actor of a gateway shares, in PostgreSQL (store.py: secret,
put_marker, find_marker): the keys of keyed hashes, made once by whoever
asks first, and the markers the shared-store check leaves
(actors/ops/shared_store.py)."""

from __future__ import annotations

import secrets as random_bytes

from actors.durable.postgres.pool import PostgresRunner
from actors.durable.postgres.sql import DECIDE_ROUNDS

__all__ = ["PostgresShared"]


class PostgresShared:
    def __init__(self, db: PostgresRunner):
        self._db = db

    async def secret(self, name: str) -> bytes:
        for _ in range(DECIDE_ROUNDS):
            await self._db.fetch("INSERT INTO aicmo_secrets (namespace, name, value, created_at) "
                                 "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                                 (self._db.namespace, name, random_bytes.token_bytes(32), self._db.now()))
            rows = await self._db.fetch("SELECT value FROM aicmo_secrets WHERE namespace = %s AND name = %s",
                                        (self._db.namespace, name))
            if rows:
                return bytes(rows[0][0])
        raise self._db.unavailable(RuntimeError(f"the secret {name!r} was neither made nor found"))

    async def put_marker(self, token: str, node: str) -> None:
        await self._db.fetch("INSERT INTO aicmo_markers (token, node, created_at) VALUES (%s, %s, %s) "
                             "ON CONFLICT (token) DO UPDATE SET node = excluded.node", (token, node, self._db.now()))

    async def find_marker(self, token: str) -> str | None:
        rows = await self._db.fetch("SELECT node FROM aicmo_markers WHERE token = %s", (token,))
        return rows[0][0] if rows else None
