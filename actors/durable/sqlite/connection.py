"""The SQLite store's one seam: its file, its connection and the thread
every statement runs on. The tables' code (keys.py, journal.py, ...) hands
it a function of the connection, to run as a read or as one write
transaction; nothing else touches the file.

WAL lets the router and the provider actors (separate processes on one
machine) read while one writes. `synchronous=NORMAL` makes a commit survive
a crash of any process (what actors do); `FULL` would also survive a power
cut, at the cost of an fsync per commit.

Every statement runs on the store's own thread: an actor's event loop only
awaits it, so a commit that waits for another process's write lock (up to
the busy timeout) stalls the request that needs it, not every request in
flight on the actor. A write is one `BEGIN IMMEDIATE` transaction: SQLite
has one writer at a time, so a check and the write that follows it cannot
interleave with another process's.

The file is made 0600 in a 0700 directory: it holds payloads and results.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from actors.durable.schema import SQLITE_MIGRATIONS, SQLITE_VERSION
from actors.durable.store import StoreHealth, StoreUnavailable
from actors.durable.tracking import HealthTracker

__all__ = ["KEYS_PER_QUERY", "SqliteConnection", "SqliteRunner", "chunks", "marks"]

T = TypeVar("T")

# Older SQLite builds allow 999 parameters in one statement.
KEYS_PER_QUERY = 500


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), KEYS_PER_QUERY):
        yield items[start:start + KEYS_PER_QUERY]


def marks(n: int) -> str:
    return ",".join("?" * n)


class SqliteRunner(Protocol):
    """What the tables' code needs of the file: a function of the connection
    run on the store's thread, as a read or as one write transaction. It
    returns values, never a cursor: a cursor dropped on the event loop's
    thread resets its statement there, while the store's thread may be
    running the same cached statement again (SQLITE_MISUSE)."""

    namespace: str

    def now(self) -> float: ...
    async def read(self, fn: Callable[..., T], /, *args: Any) -> T: ...
    async def write(self, fn: Callable[..., T], /, *args: Any) -> T: ...


class SqliteConnection:
    """One connection to the file, used from the store's own thread; every
    failure of the file (locked past the busy timeout, unreadable, disk full)
    is a StoreUnavailable, counted in the store's health."""

    kind = "sqlite"

    def __init__(self, path: str, namespace: str, *, url: str, synchronous: str = "NORMAL",
                 busy_timeout_s: float = 5.0, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, pause: Callable[[float], object] = time.sleep):
        self.path = path
        self.namespace = namespace
        self.url = url
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._monotonic = monotonic
        self._pause = pause
        self._db: sqlite3.Connection | None = None
        # The lock covers the connection against a second thread; statements
        # themselves all run on the one executor thread.
        self._lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        self.tracker = HealthTracker(url, self.kind)

    def now(self) -> float:
        """The store's wall clock: what records are stamped and leases measured with."""
        return self._clock()

    async def read(self, fn: Callable[..., T], /, *args: Any) -> T:
        """`fn(db, *args)` on the store's thread, outside a transaction."""
        return await self._on_thread(self._in_session, False, fn, args)

    async def write(self, fn: Callable[..., T], /, *args: Any) -> T:
        """`fn(db, *args)` on the store's thread, as one write transaction."""
        return await self._on_thread(self._in_session, True, fn, args)

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

    # --- the thread and the file ----------------------------------------------------
    async def _on_thread(self, fn: Callable[..., T], /, *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aicmo-sqlite")
        loop = asyncio.get_running_loop()
        started = self._monotonic()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        finally:
            self.tracker.busy(self._monotonic() - started)

    def _in_session(self, write: bool, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self._session(write) as db:
            result = fn(db, *args)
            if isinstance(result, sqlite3.Cursor):  # see SqliteRunner: a mistake of ours, refused loudly
                raise TypeError(f"{getattr(fn, '__qualname__', fn)} returned a cursor out of the store's thread")
            return result

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path != ":memory:":
                _private_file(Path(self.path))
            db = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                                 check_same_thread=False)
            # Actors opening a new file together: switching it to WAL (and the
            # first migration) can be refused at once, without the busy
            # timeout's wait, while another connection does the same.
            give_up = self._monotonic() + self._busy_timeout_s
            while True:
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute(f"PRAGMA synchronous={self._synchronous}")
                    _migrate(db, self.namespace)
                    break
                except sqlite3.OperationalError as exc:
                    if not _busy(exc) or self._monotonic() > give_up:
                        db.close()
                        raise
                    self._pause(0.01)
            self._db = db
        return self._db

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection, inside a transaction when `write`."""
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
