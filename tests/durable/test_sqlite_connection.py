"""The SQLite store's seam (actors/durable/sqlite/connection.py): what runs
on its thread stays there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from actors.durable.sqlite.connection import SqliteConnection


def test_a_cursor_is_refused_out_of_the_stores_thread_and_its_write_rolled_back(tmp_path: Path) -> None:
    # A cursor dropped on the event loop's thread resets its statement there
    # while the store's thread may be running it again: SQLITE_MISUSE, at random.
    conn = SqliteConnection(str(tmp_path / "state.db"), "ns", url="sqlite:///state.db")

    async def scenario() -> list[tuple[str]]:
        def leaks_a_cursor(db):
            return db.execute("INSERT INTO markers (token, node, created_at) VALUES ('t', 'n', 1.0)")

        with pytest.raises(TypeError, match="leaks_a_cursor returned a cursor"):
            await conn.write(leaks_a_cursor)
        rows = await conn.read(lambda db: db.execute("SELECT token FROM markers").fetchall())
        await conn.close()
        return rows

    assert asyncio.run(scenario()) == []
