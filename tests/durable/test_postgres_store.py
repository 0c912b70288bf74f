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
        assert (await store.claim_keys(CAP, [KeyClaim("before")], "r", 30, 0.0)).lost == {}
        with postgres.down():
            with pytest.raises(StoreUnavailable):
                await store.claim_keys(CAP, [KeyClaim("during")], "r", 30, 0.0)
            assert not store.health().ok
        deadline = time.monotonic() + 30
        while True:  # the pool's connections died with the server: new ones are made
            try:
                assert (await store.claim_keys(CAP, [KeyClaim("after")], "r", 30, 0.0)).lost == {}
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store never came back"
                await asyncio.sleep(0.2)
        assert store.health().ok
        assert set(await store.get_keys(CAP, ["before", "during", "after"])) == {"before", "after"}
        await store.close()

    asyncio.run(scenario())


def test_a_busy_pool_is_explained_without_opening_more_connections(postgres_database: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from actors.durable import parse_state_url
    from actors.durable.postgres import PostgresStore

    connects: list[str] = []
    real_connect = psycopg.AsyncConnection.connect

    async def counted(*args: Any, **kwargs: Any) -> Any:
        connects.append("direct")
        return await real_connect(*args, **kwargs)

    async def scenario() -> list[BaseException]:
        store = PostgresStore(parse_state_url(postgres_database.url), "ns", password=postgres_database.password,
                              pool_size=1, wait_s=0.3)
        await store.ping()
        monkeypatch.setattr(psycopg.AsyncConnection, "connect", counted)
        slow = asyncio.ensure_future(store._fetch("SELECT pg_sleep(1.5)"))  # holds the pool's only connection
        await asyncio.sleep(0.1)
        waiting = await asyncio.gather(*(store.ping() for _ in range(20)), return_exceptions=True)
        await slow
        await store.close()
        return waiting

    errors = asyncio.run(scenario())
    # Twenty requests that got no connection opened none of their own to say why: under
    # load that would exhaust the server's max_connections.
    assert connects == []
    assert all(isinstance(e, StoreUnavailable) and "stayed busy" in str(e) for e in errors)
