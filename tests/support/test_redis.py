"""The Redis test server itself (tests/support/redis.py): a real
redis-server on a free loopback port, without persistence, that a crash
empties and that starts again on the same port."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support.redis import RedisError, RedisServer, unavailable_reason
from tests.support.require import require


@pytest.fixture
def server() -> Iterator[RedisServer]:
    require(unavailable_reason(), "redis-server")
    server = RedisServer().start()
    yield server
    server.stop()


def test_answers_on_loopback_and_keeps_nothing_on_disk(server: RedisServer) -> None:
    assert server.address == f"127.0.0.1:{server.port}"
    assert server.command("SET", "greeting", "hello") == "OK"
    assert server.command("GET", "greeting") == "hello"
    assert server.keys("greet*") == ["greeting"]
    assert server.command("CONFIG", "GET", "save") == ["save", ""]
    assert server.command("CONFIG", "GET", "appendonly") == ["appendonly", "no"]
    assert server.command("CONFIG", "GET", "bind")[1] == "127.0.0.1"


def test_a_crash_loses_the_data_and_the_server_comes_back_on_its_port(server: RedisServer) -> None:
    server.command("SET", "k", "v")
    port = server.port
    server.kill()
    assert not server.running and not server.ping()
    server.start()
    assert server.port == port and server.command("DBSIZE") == 0


def test_a_password_is_required_when_set() -> None:
    require(unavailable_reason(), "redis-server")
    with RedisServer(password="s3cret-for-the-test") as guarded:
        assert guarded.command("SET", "k", "v") == "OK"  # the helper authenticates
        assert "s3cret" not in repr(guarded)
        # Another client without it is refused (redis-cli comes with redis-server).
        anonymous = subprocess.run(["redis-cli", "-h", guarded.host, "-p", str(guarded.port), "GET", "k"],
                                   capture_output=True, text=True, timeout=10)
        assert "NOAUTH" in anonymous.stdout + anonymous.stderr
        # Not on the command line either, where `ps` shows it.
        assert guarded.process is not None
        assert b"s3cret" not in open(f"/proc/{guarded.process.pid}/cmdline", "rb").read()


def test_stop_leaves_nothing_behind() -> None:
    require(unavailable_reason(), "redis-server")
    server = RedisServer().start()
    assert server.process is not None
    pid, root = server.process.pid, server.root
    server.stop()
    server.stop()  # twice is fine
    assert not root.exists()
    assert subprocess.run(["pgrep", "-f", str(root)], capture_output=True).returncode == 1
    with pytest.raises(OSError):
        open(f"/proc/{pid}/cmdline").read()
    with pytest.raises(RedisError, match="create a new RedisServer"):
        server.start()
