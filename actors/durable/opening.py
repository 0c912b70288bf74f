"""Opening the store a `state.url` names: SQLite or PostgreSQL, each
imported only when used (psycopg is not loaded by a gateway on SQLite)."""

from __future__ import annotations

from actors.durable.location import parse_state_url
from actors.durable.store import StateStore


def open_store(url: str, namespace: str, *, password: str | None = None, pool_size: int = 4) -> StateStore:
    """The store at `url`, for the gateway `namespace`. Opening is lazy: the
    first awaited call connects (and creates or migrates the schema)."""
    location = parse_state_url(url)
    if location.kind == "postgresql":
        from actors.durable.postgres import PostgresStore

        return PostgresStore(location, namespace, password=password or location.password, pool_size=pool_size)
    from actors.durable.sqlite import SqliteStore

    assert location.path is not None
    return SqliteStore(location.path, namespace, display=location.display)
