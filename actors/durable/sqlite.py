"""The embedded state store: one SQLite file in WAL mode, on a thread of its own.

WAL lets the router and the provider actors (separate processes on one
machine) read while one writes. `synchronous=NORMAL` makes a commit survive
a crash of any process (what actors do); `FULL` would also survive a power
cut, at the cost of an fsync per commit.

Every statement runs on the store's own thread: an actor's event loop only
awaits it, so a commit that waits for another process's write lock (up to
the busy timeout) stalls the request that needs it, not every request in
flight on the actor. A claim is one `BEGIN IMMEDIATE` transaction: SQLite
has one writer at a time, so the check and the write cannot interleave with
another process's.

The file is made 0600 in a 0700 directory: it holds payloads and results.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from actors.durable.schema import SQLITE_MIGRATIONS, SQLITE_VERSION
from actors.durable.sqlite_spend import SqliteSpend, prune_spend
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

_OUTBOX_COLUMNS = ("id", "capability", "method", "payload", "idempotency_key", "request_id", "state", "reason",
                   "created_at", "updated_at", "provider", "error", "attempts", "result", "lease_owner")
_JOURNAL_COLUMNS = ("capability", "provider", "key", "request_id", "method", "state", "incarnation", "updated_at",
                    "value", "error")
_KEY_COLUMNS = "key, state, fingerprint, owner, result, stored_at, lease_until"
_BLOBS = {"payload", "result", "value"}

# Older SQLite builds allow 999 parameters in one statement.
_KEYS_PER_QUERY = 500

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode

T = TypeVar("T")


def _blob(value: Any) -> bytes | None:
    return None if value is None else _encode(value)


def _unblob(value: bytes | None) -> Any:
    return None if value is None else _decode(value)


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _KEYS_PER_QUERY):
        yield items[start:start + _KEYS_PER_QUERY]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def on_thread(method: Callable[..., T]) -> Callable[..., Any]:
    """Runs a blocking method on the store's thread; callers await it."""

    @functools.wraps(method)
    async def run(self: "SqliteStore", /, *args: Any, **kwargs: Any) -> T:
        return await self._run(method, *args, **kwargs)

    run.blocking = method  # type: ignore[attr-defined] - the same code, for a caller without a loop
    return run


class SqliteStore(SqliteSpend):
    kind = "sqlite"

    def __init__(self, path: str, namespace: str = "default", *, display: str | None = None,
                 synchronous: str = "NORMAL", busy_timeout_s: float = 5.0, clock: Callable[[], float] = time.time):
        self.path = path if path == ":memory:" else str(Path(path).expanduser())
        self.namespace = namespace
        self.url = display or f"sqlite:///{self.path}"
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        # One connection, used from the store's thread; the lock covers a
        # caller that uses `.blocking` from another thread.
        self._lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        self.tracker = HealthTracker(self.url, self.kind)

    # --- plumbing ------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aicmo-sqlite")
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, self, *args, **kwargs))
        finally:
            self.tracker.busy(time.perf_counter() - started)

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path != ":memory:":
                _private_file(Path(self.path))
            db = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                                 check_same_thread=False)
            # Actors opening a new file together: switching it to WAL (and the
            # first migration) can be refused at once, without the busy
            # timeout's wait, while another connection does the same.
            give_up = time.monotonic() + self._busy_timeout_s
            while True:
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute(f"PRAGMA synchronous={self._synchronous}")
                    _migrate(db, self.namespace)
                    break
                except sqlite3.OperationalError as exc:
                    if not _busy(exc) or time.monotonic() > give_up:
                        db.close()
                        raise
                    time.sleep(0.01)
            self._db = db
        return self._db

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection, inside a transaction when `write`; every failure of
        the file (locked past the busy timeout, unreadable, disk full) is a
        StoreUnavailable, counted in the store's health."""
        with self._lock:
            self.tracker.round_trip()
            try:
                db = self._connect()
                if not write:
                    yield db
                else:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        yield db
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                    db.execute("COMMIT")
            except (sqlite3.OperationalError, OSError) as exc:  # locked, unreadable, no directory, disk full
                self.tracker.failed(str(exc), self._clock())
                raise StoreUnavailable(self.url, str(exc)) from None
            self.tracker.ok(self._clock())

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._session() as db:
            return db.execute(sql, args).fetchall()

    # --- keys ----------------------------------------------------------------------
    def _key_record(self, row: tuple[Any, ...], now: float) -> KeyRecord:
        key, state, fingerprint, owner, result, stored_at, lease_until = row
        left = None if lease_until is None else lease_until - now
        return KeyRecord(key=key, state=state, fingerprint=fingerprint, owner=owner, result=result,
                         stored_at=stored_at, lease_left_s=left)

    def _key_rows(self, db: sqlite3.Connection, capability: str, keys: Sequence[str]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for chunk in _chunks(list(dict.fromkeys(keys))):
            rows += db.execute(f"SELECT {_KEY_COLUMNS} FROM keys WHERE namespace=? AND capability=? AND key IN "
                               f"({_marks(len(chunk))})", (self.namespace, capability, *chunk)).fetchall()
        return rows

    @on_thread
    def claim_keys(self, capability: str, claims: Sequence[KeyClaim], owner: str, lease_s: float,
                   fresh_after: float) -> Claims:
        lost: dict[str, KeyRecord] = {}
        resumed: list[str] = []
        with self._session(write=True) as db:
            now = self._clock()
            found = {row[0]: row for row in self._key_rows(db, capability, [c.key for c in claims])}
            for claim in claims:
                row = found.get(claim.key)
                if row is None:
                    db.execute("INSERT INTO keys (namespace, capability, key, state, fingerprint, owner, lease_until, "
                               "result, stored_at) VALUES (?,?,?,'running',?,?,?,NULL,?)",
                               (self.namespace, capability, claim.key, claim.fingerprint, owner, now + lease_s, now))
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
                    lost[claim.key] = self._key_record(row, now)
                    continue
                db.execute("UPDATE keys SET state='running', fingerprint=?, owner=?, lease_until=?, result=? "
                           "WHERE namespace=? AND capability=? AND key=?",
                           (claim.fingerprint, owner, now + lease_s, keep, self.namespace, capability, claim.key))
                found[claim.key] = (claim.key, "running", claim.fingerprint, owner, keep, stored_at, now + lease_s)
                resumed.append(claim.key)
        return Claims(lost=lost, resumed=resumed)

    @on_thread
    def get_keys(self, capability: str, keys: Sequence[str]) -> dict[str, KeyRecord]:
        with self._session() as db:
            now = self._clock()
            return {row[0]: self._key_record(row, now) for row in self._key_rows(db, capability, keys)}

    @on_thread
    def finish_keys(self, capability: str, owner: str, rows: Sequence[tuple[str, bytes | None, str | None]],
                    now: float) -> None:
        where = "namespace=? AND capability=? AND key=? AND owner=?"
        with self._session(write=True) as db:
            for key, result, fingerprint in rows:
                if result is not None:
                    db.execute("INSERT INTO keys (namespace, capability, key, state, fingerprint, owner, lease_until, "
                               "result, stored_at) VALUES (?,?,?,'done',?,NULL,NULL,?,?) "
                               "ON CONFLICT (namespace, capability, key) DO UPDATE SET state='done', owner=NULL, "
                               "lease_until=NULL, result=excluded.result, stored_at=excluded.stored_at, "
                               "fingerprint=coalesce(keys.fingerprint, excluded.fingerprint) WHERE keys.owner=?",
                               (self.namespace, capability, key, fingerprint, result, now, owner))
                else:
                    args = (self.namespace, capability, key, owner)
                    db.execute(f"DELETE FROM keys WHERE {where} AND result IS NULL", args)
                    db.execute(f"UPDATE keys SET state='done', owner=NULL, lease_until=NULL WHERE {where}", args)

    @on_thread
    def release_claims(self, owner_prefix: str) -> int:
        escaped = owner_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._session(write=True) as db:
            return db.execute("UPDATE keys SET lease_until=0 WHERE namespace=? AND state='running' "
                              "AND owner LIKE ? ESCAPE '\\'", (self.namespace, escaped + "%")).rowcount

    @on_thread
    def expire_keys(self, before: float) -> int:
        with self._session(write=True) as db:
            return db.execute("DELETE FROM keys WHERE namespace=? AND state='done' AND stored_at<?",
                              (self.namespace, before)).rowcount

    # --- journal -------------------------------------------------------------------
    @staticmethod
    def _entry(row: tuple[Any, ...]) -> JournalEntry:
        fields = dict(zip(_JOURNAL_COLUMNS, row, strict=True))
        fields["value"] = _unblob(fields["value"])
        return JournalEntry(**fields)

    _JOURNAL = f"SELECT {', '.join(_JOURNAL_COLUMNS)} FROM journal WHERE namespace=? AND capability=?"

    def _journal_row(self, e: JournalEntry) -> tuple[Any, ...]:
        return (self.namespace, e.capability, e.provider, e.key, e.request_id, e.method, e.state, e.incarnation,
                e.updated_at, _blob(e.value), e.error)

    _PUT = ("INSERT OR REPLACE INTO journal (namespace, capability, provider, key, request_id, method, state, "
            "incarnation, updated_at, value, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)")

    def _find(self, db: sqlite3.Connection, capability: str, keys: Sequence[str],
              provider: str | None) -> dict[str, list[JournalEntry]]:
        found: dict[str, list[JournalEntry]] = {}
        for chunk in _chunks(list(dict.fromkeys(keys))):
            sql = self._JOURNAL + f" AND key IN ({_marks(len(chunk))})"
            args: tuple[Any, ...] = (self.namespace, capability, *chunk)
            if provider is not None:
                sql, args = sql + " AND provider=?", (*args, provider)
            for row in db.execute(sql, args).fetchall():
                entry = self._entry(row)
                found.setdefault(entry.key, []).append(entry)
        return found

    @on_thread
    def journal_claim(self, entries: Sequence[JournalEntry]) -> dict[str, JournalEntry]:
        if not entries:
            return {}
        capability, provider = entries[0].capability, entries[0].provider
        with self._session(write=True) as db:
            found = self._find(db, capability, [e.key for e in entries], provider)
            taken = {key: found_entries[0] for key, found_entries in found.items() if found_entries[0].state != "failed"}
            db.executemany(self._PUT, [self._journal_row(e) for e in entries if e.key not in taken])
        return taken

    @on_thread
    def journal_find_many(self, capability: str, keys: Sequence[str],
                          provider: str | None = None) -> dict[str, list[JournalEntry]]:
        with self._session() as db:
            return self._find(db, capability, keys, provider)

    @on_thread
    def journal_put_many(self, entries: Sequence[JournalEntry]) -> None:
        with self._session(write=True) as db:
            db.executemany(self._PUT, [self._journal_row(e) for e in entries])

    # --- outbox --------------------------------------------------------------------
    @staticmethod
    def _item(row: tuple[Any, ...]) -> OutboxItem:
        fields = dict(zip(_OUTBOX_COLUMNS, row, strict=True))
        for name in ("payload", "result"):
            fields[name] = _unblob(fields[name])
        return OutboxItem(**fields)

    _OUTBOX = f"SELECT {', '.join(_OUTBOX_COLUMNS)} FROM outbox"

    @on_thread
    def outbox_add(self, *, capability: str, method: str, payload: dict[str, Any], idempotency_key: str,
                   request_id: str, reason: OutboxReason, now: float, provider: str | None = None,
                   error: str | None = None) -> OutboxItem:
        state = "pending" if reason == "queued" else "parked"
        with self._session(write=True) as db:
            # One live item per key (a unique index): a request queued twice
            # (a retry after a lost reply) is the same request.
            cur = db.execute(
                "INSERT INTO outbox (namespace, capability, method, payload, idempotency_key, request_id, state, "
                "reason, created_at, updated_at, provider, error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (namespace, capability, idempotency_key) WHERE state IN ('pending','parked') DO NOTHING",
                (self.namespace, capability, method, _encode(payload), idempotency_key, request_id, state, reason,
                 now, now, provider, error))
            if cur.rowcount:
                row = db.execute(self._OUTBOX + " WHERE id=?", (cur.lastrowid,)).fetchone()
            else:
                row = db.execute(self._OUTBOX + " WHERE namespace=? AND capability=? AND idempotency_key=? AND state "
                                 "IN ('pending','parked')", (self.namespace, capability, idempotency_key)).fetchone()
        return self._item(row)

    @on_thread
    def outbox_get(self, item_id: int) -> OutboxItem | None:
        rows = self._rows(self._OUTBOX + " WHERE namespace=? AND id=?", (self.namespace, item_id))
        return self._item(rows[0]) if rows else None

    @on_thread
    def outbox_find(self, capability: str, key: str) -> OutboxItem | None:
        rows = self._rows(self._OUTBOX + " WHERE namespace=? AND capability=? AND idempotency_key=? "
                          "ORDER BY id DESC LIMIT 1", (self.namespace, capability, key))
        return self._item(rows[0]) if rows else None

    @on_thread
    def outbox_list(self, capability: str | None = None, states: tuple[str, ...] = ("pending", "parked"),
                    limit: int = 1000) -> list[OutboxItem]:
        where, args = [f"namespace=? AND state IN ({_marks(len(states))})"], [self.namespace, *states]
        if capability is not None:
            where.append("capability=?")
            args.append(capability)
        rows = self._rows(self._OUTBOX + " WHERE " + " AND ".join(where) + " ORDER BY id LIMIT ?", (*args, limit))
        return [self._item(r) for r in rows]

    @on_thread
    def outbox_update(self, item_id: int, now: float, **fields: Any) -> OutboxItem | None:
        unknown = set(fields) - OUTBOX_FIELDS
        if unknown:
            raise ValueError(f"unknown outbox fields {sorted(unknown)}")
        values = [_blob(v) if k in _BLOBS else v for k, v in fields.items()]
        sets = "".join(f"{k}=?, " for k in fields)
        with self._session(write=True) as db:
            db.execute(f"UPDATE outbox SET {sets}updated_at=?, lease_owner=NULL, lease_until=NULL "
                       "WHERE namespace=? AND id=?", (*values, now, self.namespace, item_id))
            row = db.execute(self._OUTBOX + " WHERE namespace=? AND id=?", (self.namespace, item_id)).fetchone()
        return None if row is None else self._item(row)

    @on_thread
    def outbox_lease(self, capability: str, owner: str, lease_s: float, limit: int,
                     ids: Sequence[int] | None = None) -> list[OutboxItem]:
        with self._session(write=True) as db:
            now = self._clock()
            where = "namespace=? AND capability=? AND state='pending' AND (lease_until IS NULL OR lease_until<=?)"
            args: list[Any] = [self.namespace, capability, now]
            if ids is not None:
                ids = list(ids)[:_KEYS_PER_QUERY]
                where += f" AND id IN ({_marks(len(ids))})"
                args += ids
            rows = db.execute(f"{self._OUTBOX} WHERE {where} ORDER BY id LIMIT ?", (*args, limit)).fetchall()
            items = [self._item(r) for r in rows]
            db.executemany("UPDATE outbox SET lease_owner=?, lease_until=? WHERE id=?",
                           [(owner, now + lease_s, item.id) for item in items])
        return [msgspec.structs.replace(item, lease_owner=owner) for item in items]

    @on_thread
    def outbox_release(self, ids: Sequence[int], owner: str) -> None:
        with self._session(write=True) as db:
            db.executemany("UPDATE outbox SET lease_owner=NULL, lease_until=NULL WHERE namespace=? AND id=? "
                           "AND lease_owner=?", [(self.namespace, i, owner) for i in ids])

    @on_thread
    def outbox_counts(self) -> dict[tuple[str, str], int]:
        rows = self._rows("SELECT capability, state, COUNT(*) FROM outbox WHERE namespace=? AND state IN "
                          "('pending','parked') GROUP BY capability, state", (self.namespace,))
        return {(cap, state): n for cap, state, n in rows}

    # --- gateway-wide ----------------------------------------------------------------
    @on_thread
    def secret(self, name: str) -> bytes:
        with self._session(write=True) as db:
            db.execute("INSERT INTO secrets (namespace, name, value, created_at) VALUES (?,?,?,?) "
                       "ON CONFLICT DO NOTHING", (self.namespace, name, secrets.token_bytes(32), self._clock()))
            return db.execute("SELECT value FROM secrets WHERE namespace=? AND name=?",
                              (self.namespace, name)).fetchone()[0]

    @on_thread
    def put_marker(self, token: str, node: str) -> None:
        with self._session(write=True) as db:
            db.execute("INSERT OR REPLACE INTO markers (token, node, created_at) VALUES (?,?,?)",
                       (token, node, self._clock()))

    @on_thread
    def find_marker(self, token: str) -> str | None:
        rows = self._rows("SELECT node FROM markers WHERE token=?", (token,))
        return rows[0][0] if rows else None

    @on_thread
    def prune(self, *, journal_before: float, outbox_before: float) -> dict[str, int]:
        with self._session(write=True) as db:
            journal = db.execute("DELETE FROM journal WHERE namespace=? AND state IN ('delivered','failed') "
                                 "AND updated_at<?", (self.namespace, journal_before)).rowcount
            outbox = db.execute("DELETE FROM outbox WHERE namespace=? AND state IN ('delivered','dropped') "
                                "AND updated_at<?", (self.namespace, outbox_before)).rowcount
            db.execute("DELETE FROM markers WHERE created_at<?", (self._clock() - 3600,))
            spend = prune_spend(db, self.namespace, self._clock())
        return {"journal": journal, "outbox": outbox, "spend": spend}

    @on_thread
    def ping(self) -> None:
        self._rows("SELECT 1")

    def health(self) -> StoreHealth:
        return self.tracker.snapshot()

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (the code is on the exception from Python 3.11)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc)


def _private_file(path: Path) -> None:
    """The database file 0600, in a directory made 0700 if this creates it
    (one that exists is the operator's: `doctor` warns when others can read
    it), before SQLite opens it: its -wal and -shm files take the file's mode."""
    directory = path.parent
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    if path.stat().st_uid == os.getuid():
        os.chmod(path, 0o600)


def _migrate(db: sqlite3.Connection, namespace: str) -> None:
    """Brings the file to the current schema, one version at a time, each in
    one transaction (the write lock keeps two processes from both doing it)."""
    while True:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version >= SQLITE_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] == version:  # nobody did it meanwhile
                SQLITE_MIGRATIONS[version](db, namespace)
                db.execute(f"PRAGMA user_version={version + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
