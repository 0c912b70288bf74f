"""A real Redis server for tests: Debian's `redis-server`, run from a
temporary directory on a free port on 127.0.0.1, without persistence.

    server = RedisServer().start()
    server.address      # "127.0.0.1:PORT": what RAY_REDIS_ADDRESS takes
    server.command("DBSIZE")                  # a real round trip (RESP over TCP)
    server.kill(); server.start()             # a crash: the data is gone (no persistence), same port
    server.stop()       # nothing left running, the directory removed

What the head node's GCS needs for fault tolerance (Ray's `RAY_REDIS_ADDRESS`)
in a test is a Redis that outlives the head, not one that outlives itself:
RDB snapshots and the append-only file are off, so `kill()` loses every key,
as a real Redis without persistence would. (A production deployment needs a
highly available Redis, or persistence on a volume: docs/head-node.md.)

The server runs in a process group and session of its own, started with
`--daemonize no`, and is stopped by signalling its pid: nothing here stops
another test's Redis. When redis-server is missing, `unavailable_reason()`
says what to install.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["RedisError", "RedisServer", "redis_server_bin", "unavailable_reason"]

_INSTALL_HINT = "install Debian's redis-server package (apt-get install redis-server; CI runs .ci/system-packages)"


class RedisError(RuntimeError):
    """The server could not be started, reached or stopped; the message holds the tail of its log."""


def redis_server_bin() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


def unavailable_reason() -> str | None:
    """Why a RedisServer cannot run here, or None when it can."""
    if redis_server_bin() is None:
        return f"redis-server is not installed: {_INSTALL_HINT}"
    return None


# Servers not stopped by their owner (an interrupted run) are stopped when the
# interpreter exits, so no redis-server outlives the test session.
_live: set[RedisServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop()


class RedisServer:
    """One redis-server in a directory of its own. `password`: given, the
    server requires it (`requirepass`); None, it takes any client, as the
    tests' loopback-only servers may. Not thread-safe."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None, password: str | None = None,
                 root: str | Path | None = None):
        found = redis_server_bin()
        if found is None:
            raise RedisError(unavailable_reason() or "redis-server is not installed")
        self.binary = found
        self.host = host
        self.port = port or _free_port(host)
        self.password = password
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="aicmo-redis-", dir="/tmp"))
        self.process: subprocess.Popen[bytes] | None = None
        self._removed = False

    @property
    def address(self) -> str:
        """host:port, as RAY_REDIS_ADDRESS takes it."""
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.root / "redis.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # --- lifecycle -------------------------------------------------------------
    def start(self, timeout_s: float = 30) -> RedisServer:
        """Start the server (again, after kill(), on the same port) and wait
        until it answers PING. After stop() the object is spent."""
        if self._removed:
            raise RedisError("this server was stopped and its directory removed; create a new RedisServer")
        if self.running:
            return self
        _live.add(self)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        args = [self.binary, "--bind", self.host, "--port", str(self.port), "--dir", str(self.root),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
                "--logfile", str(self.log_file), "--unixsocket", "", "--databases", "16"]
        if self.password is not None:
            # Given on the command line, the password would show in `ps`: a config file of its own.
            conf = self.root / "password.conf"
            conf.write_text(f'requirepass "{self.password}"\n')
            conf.chmod(0o600)
            args.insert(1, str(conf))
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                self.process = None
                raise RedisError(f"redis-server exited before it answered:\n{err[-1500:]}{self._log_tail()}")
            if self.ping():
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise RedisError(f"redis-server did not answer PING in {timeout_s:.0f} s{self._log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash: without persistence every key is lost. start() again on the same port."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def stop(self) -> None:
        """Stop the server and remove its directory. Safe to call twice."""
        try:
            self.kill()
        finally:
            _live.discard(self)
            if self._own_root and not self._removed:
                shutil.rmtree(self.root, ignore_errors=True)
            self._removed = True

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- talking to it ---------------------------------------------------------
    def ping(self) -> bool:
        try:
            return self.command("PING", timeout_s=1) == "PONG"
        except (OSError, RedisError):
            return False

    def command(self, *args: str | bytes | int, timeout_s: float = 5) -> Any:
        """One command over a new connection (authenticated when the server
        has a password); the reply decoded: str, int, None, or a list."""
        with socket.create_connection((self.host, self.port), timeout=timeout_s) as conn:
            reader = conn.makefile("rb")
            if self.password is not None:
                conn.sendall(_encode("AUTH", self.password))
                _read_reply(reader)
            conn.sendall(_encode(*args))
            return _read_reply(reader)

    def keys(self, pattern: str = "*") -> list[str]:
        """Every key matching `pattern` (SCAN, not KEYS: fine either way on a test server)."""
        found: list[str] = []
        cursor = "0"
        while True:
            cursor, batch = self.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            found.extend(batch)
            if cursor == "0":
                return sorted(set(found))

    def _log_tail(self, chars: int = 2000) -> str:
        try:
            return "\n--- redis.log ---\n" + self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __repr__(self) -> str:  # no password
        return f"RedisServer({self.address!r}, running={self.running})"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _encode(*args: str | bytes | int) -> bytes:
    """A RESP array of bulk strings: how every client sends a command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(reader: Any) -> Any:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise RedisError("the connection closed mid-reply")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise RedisError(f"redis: {body.decode(errors='replace')}")
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = reader.read(size + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        size = int(body)
        return None if size < 0 else [_read_reply(reader) for _ in range(size)]
    raise RedisError(f"unexpected reply from redis: {line[:80]!r}")
