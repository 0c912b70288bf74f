"""What only the PostgreSQL store does: migrating once when many actors
start together, a server that goes away and comes back, and a password
that never shows."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import psycopg
import pytest

from actors.durable import KeyClaim, StoreUnavailable, open_store
from actors.durable.schema import PG_VERSION

CAP = "email_sending"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_actors_starting_together_migrate_a_new_database_once(postgres_database: Any) -> None:
    async def scenario() -> None:
        stores = [open_store(postgres_database.url, f"ns{i}", password=postgres_database.password) for i in range(8)]
        await asyncio.gather(*(s.ping() for s in stores))
        for s in stores:
            await s.close()

    asyncio.run(scenario())
    with psycopg.connect(postgres_database.conninfo) as conn:
        assert conn.execute("SELECT version FROM aicmo_schema ORDER BY version").fetchall() == [
            (v,) for v in range(1, PG_VERSION + 1)]


def test_a_server_that_does_not_answer_is_store_unavailable_without_the_password() -> None:
    store = open_store(f"postgresql://aicmo@127.0.0.1:{free_port()}/aicmo", "ns", password="hunter2-very-secret")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(store.claim_keys(CAP, [KeyClaim("k")], "r", 30, 0.0))
    assert time.monotonic() - started < 10  # bounded by the store's wait, not a TCP timeout
    message = str(caught.value)
    assert "postgresql://aicmo@127.0.0.1" in message and "hunter2" not in message
    health = store.health()
    assert not health.ok and "hunter2" not in (health.last_error or "") and "hunter2" not in health.url


def test_a_wrong_password_is_reported_without_it(postgres: Any) -> None:
    store = open_store(postgres.url, "ns", password="not-the-password-xyz")
    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(store.ping())
    assert "password authentication failed" in str(caught.value) and "not-the-password-xyz" not in str(caught.value)


def test_the_store_comes_back_with_a_restarted_server(postgres: Any, postgres_database: Any) -> None:
    async def scenario() -> None:
        store = open_store(postgres_database.url, "ns", password=postgres_database.password)
        assert await store.claim_keys(CAP, [KeyClaim("before")], "r", 30, 0.0) == {}
        with postgres.down():
            with pytest.raises(StoreUnavailable):
                await store.claim_keys(CAP, [KeyClaim("during")], "r", 30, 0.0)
            assert not store.health().ok
        deadline = time.monotonic() + 30
        while True:  # the pool's connections died with the server: new ones are made
            try:
                assert await store.claim_keys(CAP, [KeyClaim("after")], "r", 30, 0.0) == {}
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store never came back"
                await asyncio.sleep(0.2)
        assert store.health().ok
        assert set(await store.get_keys(CAP, ["before", "during", "after"])) == {"before", "after"}
        await store.close()

    asyncio.run(scenario())
