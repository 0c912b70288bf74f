"""Stores for the contract tests: the embedded SQLite file, and a real
PostgreSQL server (tests/support/postgres.py), each test in a namespace of
its own."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.durable import StateStore, open_store


@pytest.fixture(scope="session")
def pg_url() -> Iterator[tuple[str, str]]:
    """(url without password, password) of a database on a real server."""
    url = os.environ.get("AICMO_TEST_PG_URL")
    if url:
        yield url, os.environ.get("AICMO_TEST_PG_PASSWORD", "")
        return
    server = pytest.importorskip("tests.support.postgres")
    yield from server.database_for_tests()


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
