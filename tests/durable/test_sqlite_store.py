"""What only the embedded SQLite store does: its own thread, its file's
mode, the files from before schema versions, and a file it cannot use."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from actors.durable import KeyClaim, StoreUnavailable
from actors.durable.sqlite import SqliteStore
from actors.durable.schema import SQLITE_VERSION

CAP = "email_sending"


def test_a_held_write_lock_stalls_the_waiting_call_not_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(str(path), "ns")
    asyncio.run(store.ping())  # the file and its schema exist
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    released = threading.Lock()

    def release() -> None:
        with released:
            if other.in_transaction:
                other.execute("COMMIT")

    # Were the write to block the loop, nothing below would run until it gave
    # up or got the lock: this lets it have the lock, and the test fail.
    fallback = threading.Timer(10.0, release)
    fallback.start()

    async def scenario() -> int:
        write = asyncio.ensure_future(store.finish_keys(CAP, "r", [("k1", b"result", None)], now=1.0))
        served = 0
        while served < 20 and not write.done():   # the loop serves other work while the write waits
            await asyncio.sleep(0.01)
            served += 1
        pending = not write.done()
        release()
        await write
        return served if pending else -1

    try:
        served = asyncio.run(scenario())
    finally:
        fallback.cancel()
        other.close()
    assert served == 20   # twenty turns of the loop while the write still waited for the lock
    assert asyncio.run(store.get_keys(CAP, ["k1"]))["k1"].result == b"result"


def test_the_file_is_private_to_its_owner(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "ns"
    asyncio.run(SqliteStore(str(directory / "state.db"), "ns").ping())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        if (directory / name).exists():
            assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name


def test_a_file_from_before_schema_versions_keeps_its_queue_and_results(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE results (capability TEXT NOT NULL, key TEXT NOT NULL, result BLOB NOT NULL, stored_at REAL NOT NULL,
            PRIMARY KEY (capability, key));
        CREATE INDEX results_age ON results (stored_at);
        CREATE TABLE journal (capability TEXT NOT NULL, provider TEXT NOT NULL, key TEXT NOT NULL, request_id TEXT NOT NULL,
            method TEXT NOT NULL, state TEXT NOT NULL, incarnation TEXT NOT NULL, updated_at REAL NOT NULL, value BLOB,
            error TEXT, PRIMARY KEY (capability, key, provider));
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, capability TEXT NOT NULL, method TEXT NOT NULL,
            payload BLOB NOT NULL, idempotency_key TEXT NOT NULL, request_id TEXT NOT NULL, state TEXT NOT NULL,
            reason TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, provider TEXT, error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0, result BLOB);
        CREATE INDEX outbox_by_state ON outbox (capability, state, id);
        CREATE INDEX outbox_by_key ON outbox (capability, idempotency_key);
        INSERT INTO results VALUES ('email_sending', 'k-old', x'01', 100.0);
        INSERT INTO journal VALUES ('email_sending', 'smtp', 'k-old', 'r', 'send_email', 'started', 'i', 100.0, NULL, NULL);
        INSERT INTO outbox (id, capability, method, payload, idempotency_key, request_id, state, reason, created_at,
            updated_at) VALUES (7, 'email_sending', 'send_email', x'80', 'k-q', 'r', 'pending', 'queued', 1.0, 1.0);
    """)
    old.close()
    store = SqliteStore(str(path), "mine")

    async def scenario() -> None:
        assert (await store.get_keys(CAP, ["k-old"]))["k-old"].result == b"\x01"
        assert (await store.journal_find_many(CAP, ["k-old"]))["k-old"][0].state == "started"  # still to settle
        [item] = await store.outbox_list(CAP)
        assert (item.id, item.idempotency_key, item.state, item.payload) == (7, "k-q", "pending", {})
        fresh = await store.outbox_add(capability=CAP, method="send_email", payload={}, idempotency_key="k-new",
                                       request_id="r", reason="queued", now=2.0)
        assert fresh.id == 8  # ids go on after the old ones

    asyncio.run(scenario())
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SQLITE_VERSION


def test_a_file_it_cannot_open_is_a_store_unavailable_with_its_health(tmp_path: Path) -> None:
    blocked = tmp_path / "state.db"
    blocked.mkdir()  # a directory where the file should be
    store = SqliteStore(str(blocked), "ns")
    with pytest.raises(StoreUnavailable, match="state.db"):
        asyncio.run(store.claim_keys(CAP, [KeyClaim("k")], "r", 30, 0.0))
    health = store.health()
    assert not health.ok and health.failing_since is not None and health.last_error
