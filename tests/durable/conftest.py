"""Stores for the contract tests: the embedded SQLite file, and a real
PostgreSQL server (tests/support/postgres.py), each test in a namespace of
its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.durable import StateStore, open_store


@pytest.fixture(scope="session")
def pg_url(postgres: Any) -> tuple[str, str]:
    """(url without password, password) of a database on the session's
    server; tests keep apart by namespace, as gateways sharing it do."""
    return postgres.url, postgres.password


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., StateStore]]:
    """`make_store(namespace=None) -> StateStore`: stores of one kind that
    share one database; each call is another connection (another actor)."""
    namespace = f"t{uuid.uuid4().hex[:8]}"
    if request.param == "sqlite":
        url, password = f"sqlite:///{tmp_path / 'state.db'}", None
    else:
        url, password = request.getfixturevalue("pg_url")

    def make(ns: str | None = None, **kw: Any) -> StateStore:
        return open_store(url, ns or namespace, password=password, **kw)

    make.kind = request.param  # type: ignore[attr-defined]
    yield make


def run(coro: Any) -> Any:
    return asyncio.run(coro)
