"""The embedded state store: one SQLite file in WAL mode.

WAL lets the router and the provider actors (separate processes) read while
one writes; each write is one short transaction. `synchronous=NORMAL` makes
a commit survive a crash of any process (what actors do); `FULL` would also
survive a power cut, at the cost of an fsync per commit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from actors.durable.store import JournalEntry, OutboxItem, OutboxReason

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    capability TEXT NOT NULL, key TEXT NOT NULL, result BLOB NOT NULL, stored_at REAL NOT NULL,
    PRIMARY KEY (capability, key));
CREATE INDEX IF NOT EXISTS results_age ON results (stored_at);
CREATE TABLE IF NOT EXISTS journal (
    capability TEXT NOT NULL, provider TEXT NOT NULL, key TEXT NOT NULL, request_id TEXT NOT NULL,
    method TEXT NOT NULL, state TEXT NOT NULL, incarnation TEXT NOT NULL, updated_at REAL NOT NULL,
    value BLOB, error TEXT,
    PRIMARY KEY (capability, key, provider));
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, capability TEXT NOT NULL, method TEXT NOT NULL, payload BLOB NOT NULL,
    idempotency_key TEXT NOT NULL, request_id TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, provider TEXT, error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, result BLOB);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (capability, state, id);
CREATE INDEX IF NOT EXISTS outbox_by_key ON outbox (capability, idempotency_key);
"""

_OUTBOX_COLUMNS = ("id", "capability", "method", "payload", "idempotency_key", "request_id", "state", "reason",
                   "created_at", "updated_at", "provider", "error", "attempts", "result")
_BLOBS = {"payload", "result", "value"}

# Older SQLite builds allow 999 parameters in one statement.
_KEYS_PER_QUERY = 500

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def _blob(value: Any) -> bytes | None:
    return None if value is None else _encode(value)


def _unblob(value: bytes | None) -> Any:
    return None if value is None else _decode(value)


class SqliteStore:
    def __init__(self, path: str, synchronous: str = "NORMAL", busy_timeout_s: float = 30.0):
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process, used from the actor's event-loop thread;
        # the lock covers the rare call from another thread.
        self._db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def _write(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- results -------------------------------------------------------------
    def get_result(self, capability: str, key: str, not_before: float) -> bytes | None:
        rows = self._read("SELECT result FROM results WHERE capability=? AND key=? AND stored_at>=?",
                          (capability, key, not_before))
        return rows[0][0] if rows else None

    def put_result(self, capability: str, key: str, result: bytes, now: float) -> None:
        self._write("INSERT OR REPLACE INTO results (capability, key, result, stored_at) VALUES (?,?,?,?)",
                    (capability, key, result, now))

    def put_results_many(self, capability: str, rows: list[tuple[str, bytes, float]]) -> None:
        self._transaction("INSERT OR REPLACE INTO results (capability, key, result, stored_at) VALUES (?,?,?,?)",
                          [(capability, key, result, at) for key, result, at in rows])

    def _transaction(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Many rows, one commit."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def expire_results(self, before: float) -> int:
        return self._write("DELETE FROM results WHERE stored_at<?", (before,)).rowcount

    # --- journal -------------------------------------------------------------
    @staticmethod
    def _entry(row: tuple[Any, ...]) -> JournalEntry:
        cap, provider, key, request_id, method, state, incarnation, updated_at, value, error = row
        return JournalEntry(capability=cap, provider=provider, key=key, request_id=request_id, method=method,
                            state=state, incarnation=incarnation, updated_at=updated_at, value=_unblob(value),
                            error=error)

    _JOURNAL = ("SELECT capability, provider, key, request_id, method, state, incarnation, updated_at, value, error "
                "FROM journal WHERE capability=?")

    def journal_get(self, capability: str, provider: str, key: str) -> JournalEntry | None:
        rows = self._read(self._JOURNAL + " AND key=? AND provider=?", (capability, key, provider))
        return self._entry(rows[0]) if rows else None

    def journal_find(self, capability: str, key: str) -> list[JournalEntry]:
        return [self._entry(r) for r in self._read(self._JOURNAL + " AND key=?", (capability, key))]

    def journal_find_many(self, capability: str, keys: Sequence[str],
                          provider: str | None = None) -> dict[str, list[JournalEntry]]:
        found: dict[str, list[JournalEntry]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _KEYS_PER_QUERY):
            chunk = unique[start:start + _KEYS_PER_QUERY]
            sql = self._JOURNAL + f" AND key IN ({','.join('?' * len(chunk))})"
            args: tuple[Any, ...] = (capability, *chunk)
            if provider is not None:
                sql, args = sql + " AND provider=?", (*args, provider)
            for row in self._read(sql, args):
                entry = self._entry(row)
                found.setdefault(entry.key, []).append(entry)
        return found

    @staticmethod
    def _journal_row(e: JournalEntry) -> tuple[Any, ...]:
        return (e.capability, e.provider, e.key, e.request_id, e.method, e.state, e.incarnation, e.updated_at,
                _blob(e.value), e.error)

    def journal_put(self, e: JournalEntry) -> None:
        self._write("INSERT OR REPLACE INTO journal VALUES (?,?,?,?,?,?,?,?,?,?)", self._journal_row(e))

    def journal_put_many(self, entries: list[JournalEntry]) -> None:
        self._transaction("INSERT OR REPLACE INTO journal VALUES (?,?,?,?,?,?,?,?,?,?)",
                          [self._journal_row(e) for e in entries])

    # --- outbox --------------------------------------------------------------
    @staticmethod
    def _item(row: tuple[Any, ...]) -> OutboxItem:
        fields = dict(zip(_OUTBOX_COLUMNS, row, strict=True))
        for name in ("payload", "result"):
            fields[name] = _unblob(fields[name])
        return OutboxItem(**fields)

    _OUTBOX = f"SELECT {', '.join(_OUTBOX_COLUMNS)} FROM outbox"

    def outbox_add(self, *, capability: str, method: str, payload: dict[str, Any], idempotency_key: str,
                   request_id: str, reason: OutboxReason, now: float, provider: str | None = None,
                   error: str | None = None) -> OutboxItem:
        state = "pending" if reason == "queued" else "parked"
        with self._lock:
            # One live item per key: a request queued twice (a retry after a
            # lost reply) is the same request.
            rows = self._db.execute(self._OUTBOX + " WHERE capability=? AND idempotency_key=? AND state IN "
                                    "('pending','parked')", (capability, idempotency_key)).fetchall()
            if rows:
                return self._item(rows[0])
            cur = self._db.execute(
                "INSERT INTO outbox (capability, method, payload, idempotency_key, request_id, state, reason, "
                "created_at, updated_at, provider, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (capability, method, _encode(payload), idempotency_key, request_id, state, reason, now, now,
                 provider, error))
            row = self._db.execute(self._OUTBOX + " WHERE id=?", (cur.lastrowid,)).fetchone()
        return self._item(row)

    def outbox_get(self, item_id: int) -> OutboxItem | None:
        rows = self._read(self._OUTBOX + " WHERE id=?", (item_id,))
        return self._item(rows[0]) if rows else None

    def outbox_find(self, capability: str, key: str) -> OutboxItem | None:
        rows = self._read(self._OUTBOX + " WHERE capability=? AND idempotency_key=? ORDER BY id DESC LIMIT 1",
                          (capability, key))
        return self._item(rows[0]) if rows else None

    def outbox_list(self, capability: str | None = None, states: tuple[str, ...] = ("pending", "parked"),
                    limit: int = 1000) -> list[OutboxItem]:
        where, args = [f"state IN ({','.join('?' * len(states))})"], list(states)
        if capability is not None:
            where.append("capability=?")
            args.append(capability)
        rows = self._read(self._OUTBOX + " WHERE " + " AND ".join(where) + " ORDER BY id LIMIT ?", (*args, limit))
        return [self._item(r) for r in rows]

    def outbox_update(self, item_id: int, now: float, **fields: Any) -> OutboxItem | None:
        unknown = set(fields) - set(_OUTBOX_COLUMNS)
        if unknown:
            raise ValueError(f"unknown outbox fields {sorted(unknown)}")
        values = [_blob(v) if k in _BLOBS else v for k, v in fields.items()]
        sets = ", ".join(f"{k}=?" for k in fields)
        self._write(f"UPDATE outbox SET {sets}, updated_at=? WHERE id=?", (*values, now, item_id))
        return self.outbox_get(item_id)

    def outbox_counts(self) -> dict[tuple[str, str], int]:
        rows = self._read("SELECT capability, state, COUNT(*) FROM outbox WHERE state IN ('pending','parked') "
                          "GROUP BY capability, state")
        return {(cap, state): n for cap, state, n in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
