"""The PostgreSQL test server itself (tests/support/postgres.py): a real
server, a real password, and outages that behave like a real one's."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer, postgres_bin_dir, unavailable_reason
from tests.support.require import require

psycopg = pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    """A server of this module's own, for the tests that stop and kill it:
    the session's `postgres` stays up for everyone else."""
    require(unavailable_reason(), "PostgreSQL")
    server = PostgresServer(user="outage", database="outage").start()
    yield server
    server.stop()


def test_connects_with_the_password_and_only_with_it(postgres: PostgresServer) -> None:
    assert postgres.url == f"postgresql://aicmo@127.0.0.1:{postgres.port}/aicmo"
    assert postgres.password not in postgres.url and postgres.password not in repr(postgres)
    # The gateway's way: the URL without a password, PGPASSWORD from the environment.
    with psycopg.connect(postgres.url, password=postgres.env["PGPASSWORD"]) as conn:
        user, superuser = conn.execute("SELECT current_user, usesuper FROM pg_user WHERE usename = current_user").fetchone()
        stored = conn.execute("SELECT 1").fetchone()
    assert (user, superuser, stored) == ("aicmo", False, (1,))
    # Both are refused by the server (scram-sha-256 for every connection), not by the client.
    for wrong in ("not-the-password", ""):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(postgres.url, password=wrong, connect_timeout=5)


def test_databases_are_separate_and_owned_by_the_role(postgres: PostgresServer) -> None:
    one, two = postgres.create_database("t_sep_one"), postgres.create_database("t_sep_two")
    try:
        with psycopg.connect(one.conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE marker (v int)")  # the role owns the database: it may create its schema
            conn.execute("INSERT INTO marker VALUES (1)")
        with psycopg.connect(two.conninfo) as conn:
            assert conn.execute("SELECT to_regclass('marker')").fetchone() == (None,)
        assert one.url.endswith("/t_sep_one") and one.env == {"PGPASSWORD": postgres.password}
    finally:
        postgres.drop_database("t_sep_one")
        postgres.drop_database("t_sep_two")


def test_postgres_database_fixture_gives_a_fresh_database(postgres_database) -> None:
    with psycopg.connect(postgres_database.conninfo) as conn:
        name, tables = conn.execute(
            "SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')").fetchone()
    assert name == postgres_database.name and name.startswith("t_test_postgres_database_fixture") and tables == 0


def _insert(server: PostgresServer, value: int) -> None:
    with psycopg.connect(server.conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS rows (v int)")
        conn.execute("INSERT INTO rows VALUES (%s)", (value,))


def _values(server: PostgresServer) -> list[int]:
    with psycopg.connect(server.conninfo) as conn:
        return [v for (v,) in conn.execute("SELECT v FROM rows ORDER BY v")]


def test_restart_breaks_connections_and_keeps_data(own_server: PostgresServer) -> None:
    _insert(own_server, 1)
    held = psycopg.connect(own_server.conninfo, autocommit=True)
    port = own_server.port
    with own_server.down():
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(own_server.conninfo, connect_timeout=2)
    # A connection from before the outage is gone for good; a new one works, same port.
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")
    held.close()
    assert own_server.port == port and _values(own_server) == [1]
    own_server.restart()
    assert _values(own_server) == [1]


def test_kill_keeps_every_committed_row(own_server: PostgresServer) -> None:
    _insert(own_server, 2)
    own_server.kill()
    try:
        assert not own_server.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(own_server.conninfo, connect_timeout=2)
    finally:
        own_server.start()  # crash recovery from the WAL
    assert 2 in _values(own_server)


def test_stop_leaves_nothing_behind() -> None:
    require(unavailable_reason(), "PostgreSQL")
    server = PostgresServer().start()
    pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    root = server.root
    server.stop()
    server.stop()  # twice is fine
    assert not root.exists()
    assert not _alive(pid)
    leftovers = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
    with pytest.raises(Exception, match="create a new PostgresServer"):
        server.start()


def test_finds_the_newest_installed_version() -> None:
    found = postgres_bin_dir()
    if found is None:
        pytest.skip("PostgreSQL is not installed")
    installed = [int(p.name) for p in Path("/usr/lib/postgresql").iterdir() if p.name.isdigit()
                 and (p / "bin" / "initdb").exists()]
    assert found == Path(f"/usr/lib/postgresql/{max(installed)}/bin")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's bookkeeping is left
