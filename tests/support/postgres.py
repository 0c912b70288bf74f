"""A real PostgreSQL server for tests: Debian's `postgresql` package, run from
a temporary directory on a free port on 127.0.0.1.

    server = PostgresServer().start()
    server.url          # postgresql://aicmo@127.0.0.1:PORT/aicmo (no password: the gateway's form)
    server.password     # give it as PGPASSWORD (server.env)
    db = server.create_database("t_outbox")   # a fresh database owned by the same role
    with server.down():  # an outage: connections fail inside, work again after
        ...
    server.kill(); server.start()   # a crash (immediate shutdown) and the recovery
    server.stop()       # nothing left running, the directory removed

Everything lives in one directory: the data directory, the Unix socket, the
log. The server is started with `initdb` and `pg_ctl` from the newest
/usr/lib/postgresql/<version>/bin, which refuse to run as root: as root the
directory is handed to the `postgres` user (created by the package) and every
command runs through `runuser -u postgres --`.

Every connection, the helper's own admin ones included, authenticates with a
password (scram-sha-256, TCP and socket alike), so tests exercise the same
path as a deployment. The superuser's password is generated and known only to
this object; tests get a non-superuser role that owns its databases.

`host` is where it listens (127.0.0.1 unless told); on another address
(the machine's own, which Ray nodes in network namespaces of their own can
reach) it lets in clients of the networks the machine is on.

fsync is off: these servers never outlive a machine crash, and it saves
seconds per test on a shared disk. Commits are still written to the kernel
before they are acknowledged (synchronous_commit stays on), so a killed
server (`kill()`) keeps every committed row, as a real one would.

When PostgreSQL is missing, `unavailable_reason()` says what to install.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Database", "PostgresError", "PostgresServer", "postgres_bin_dir", "unavailable_reason"]

_PG_ROOT = Path("/usr/lib/postgresql")
_RUN_AS = "postgres"  # the package's system user; initdb and pg_ctl refuse root
_INSTALL_HINT = "install Debian's postgresql package (apt-get install postgresql; CI runs .ci/system-packages)"


class PostgresError(RuntimeError):
    """The server could not be set up, started or stopped; the message holds the tail of its log."""


@dataclass(frozen=True)
class Database:
    """One database on the server, owned by the test role."""

    name: str
    url: str  # postgresql://user@host:port/name, no password: what state.url takes
    password: str

    @property
    def env(self) -> dict[str, str]:
        """What a process needs beside `url` to connect (libpq and the gateway read PGPASSWORD)."""
        return {"PGPASSWORD": self.password}

    @property
    def conninfo(self) -> str:
        """`url` with the password in it, for psycopg.connect() in tests. Never log it."""
        return _with_password(self.url, self.password)


def postgres_bin_dir() -> Path | None:
    """The newest installed server's bin directory (Debian installs one per major version), or None."""
    versions = []
    if _PG_ROOT.is_dir():
        for entry in _PG_ROOT.iterdir():
            if entry.name.isdigit() and (entry / "bin" / "initdb").exists() and (entry / "bin" / "pg_ctl").exists():
                versions.append(int(entry.name))
    return _PG_ROOT / str(max(versions)) / "bin" if versions else None


def unavailable_reason() -> str | None:
    """Why a PostgresServer cannot run here, or None when it can."""
    if postgres_bin_dir() is None:
        return f"PostgreSQL is not installed (no {_PG_ROOT}/<version>/bin/initdb): {_INSTALL_HINT}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_RUN_AS)
        except KeyError:
            return f"running as root needs the {_RUN_AS!r} user to run initdb and pg_ctl as: {_INSTALL_HINT}"
        if shutil.which("runuser") is None:
            return "running as root needs runuser (util-linux) to run initdb and pg_ctl as another user"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e . installs psycopg[binary])"
    return None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _with_password(url: str, password: str) -> str:
    from urllib.parse import quote

    scheme, rest = url.split("://", 1)
    user, at, hostpart = rest.partition("@")
    return f"{scheme}://{user}:{quote(password, safe='')}@{hostpart}"


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Servers not stopped by their owner (an interrupted test run) are stopped when
# the interpreter exits, so no postmaster outlives the test session.
_live: set[PostgresServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop()


class PostgresServer:
    """One PostgreSQL server in a directory of its own. Not thread-safe."""

    def __init__(
        self,
        *,
        user: str = "aicmo",
        database: str = "aicmo",
        password: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        root: str | Path | None = None,
        settings: dict[str, Any] | None = None,
        bin_dir: str | Path | None = None,
    ):
        if not _IDENTIFIER.match(user) or not _IDENTIFIER.match(database):
            raise ValueError("user and database must be lower-case SQL identifiers")
        found = Path(bin_dir) if bin_dir else postgres_bin_dir()
        if found is None:
            raise PostgresError(unavailable_reason() or "PostgreSQL is not installed")
        self.bin_dir = found
        self.user = user
        self.database = database
        self.password = password or secrets.token_urlsafe(18)
        self.host = host
        self.port = port or _free_port(host)
        self._superuser_password = secrets.token_urlsafe(18)
        self._settings = {
            "listen_addresses": f"'{host}'",
            "port": self.port,
            "max_connections": 200,  # a dozen actors with small pools each, and the tests' own connections
            "shared_buffers": "'32MB'",
            "fsync": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
            # Dynamic shared memory in the data directory, not /dev/shm: a server SIGKILLed or
            # removed while down can leave nothing behind outside its directory.
            "dynamic_shared_memory_type": "mmap",
            "log_min_messages": "warning",
            **(settings or {}),
        }
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="aicmo-pg-", dir="/tmp"))
        self._as_other_user = os.geteuid() == 0
        self._initialised = False
        self._running = False
        self._removed = False

    # --- where things are ------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        """postgresql://user@host:port/db, without the password (the gateway's state.url)."""
        return self.url_for(self.database)

    dsn = url

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a process that connects with `url` (the gateway reads PGPASSWORD)."""
        return {"PGPASSWORD": self.password}

    @property
    def conninfo(self) -> str:
        """`url` with the password in it, for psycopg.connect() in tests. Never log it."""
        return _with_password(self.url, self.password)

    @property
    def running(self) -> bool:
        return self._running

    # --- lifecycle -------------------------------------------------------------
    def start(self, timeout_s: float = 60) -> PostgresServer:
        """Start the server; the first start also creates the cluster, the role and the database.
        After stop() the object is spent: make a new one."""
        if self._removed:
            raise PostgresError("this server was stopped and its directory removed; create a new PostgresServer")
        if self._running:
            return self
        _live.add(self)
        try:
            if not self._initialised:
                self._initdb()
            self._pg_ctl("start", "-w", "-t", str(int(timeout_s)), "-l", str(self.log_file), timeout_s=timeout_s + 10)
            self._running = True
            if not self._initialised:
                self._create_role_and_database()
                self._initialised = True
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected, no waiting for them), then
        the directory is removed. Safe to call twice."""
        try:
            self._halt("fast")
        finally:
            _live.discard(self)
            if self._own_root and not self._removed:
                shutil.rmtree(self.root, ignore_errors=True)
            self._removed = True

    def kill(self) -> None:
        """Immediate shutdown, as if the server crashed: every backend quits at
        once, without a checkpoint. `start()` recovers from the WAL, on the
        same port and data."""
        self._halt("immediate")

    def restart(self, down_s: float = 0.0) -> None:
        """Fast shutdown, `down_s` of outage, then start again on the same port and data."""
        self._halt("fast")
        if down_s:
            time.sleep(down_s)
        self.start()

    @contextlib.contextmanager
    def down(self, mode: str = "fast") -> Iterator[None]:
        """An outage for the length of the block (mode "fast" or "immediate");
        the server is started again afterwards even if the block raised."""
        self._halt(mode)
        try:
            yield
        finally:
            self.start()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- databases -------------------------------------------------------------
    def create_database(self, name: str) -> Database:
        """A new, empty database owned by the test role (one per test keeps tests apart)."""
        if not _IDENTIFIER.match(name):
            raise ValueError(f"database name {name!r} must be a lower-case SQL identifier (a-z, 0-9, _)")
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        return Database(name=name, url=self.url_for(name), password=self.password)

    def drop_database(self, name: str) -> None:
        """Drop it, disconnecting anyone still connected."""
        if not _IDENTIFIER.match(name):
            raise ValueError(f"database name {name!r} must be a lower-case SQL identifier")
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # --- internals -------------------------------------------------------------
    def _run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        command = [*args]
        if self._as_other_user:
            command = ["runuser", "-u", _RUN_AS, "--", *command]
        # LC_ALL=C: initdb takes its locale from the environment and fails on one the machine lacks.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env,
                                  cwd=self.root, check=True)
        except subprocess.CalledProcessError as exc:
            raise PostgresError(f"{Path(args[0]).name} {' '.join(args[1:2])} failed (exit {exc.returncode}):\n"
                                f"{(exc.stdout or '')[-1500:]}{(exc.stderr or '')[-1500:]}{self._log_tail()}") from None
        except subprocess.TimeoutExpired:
            raise PostgresError(f"{Path(args[0]).name} {' '.join(args[1:2])} did not finish in {timeout_s:.0f} s"
                                f"{self._log_tail()}") from None

    def _pg_ctl(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return self._run(str(self.bin_dir / "pg_ctl"), *args[:1], "-D", str(self.data_dir), *args[1:],
                         timeout_s=timeout_s)

    def _initdb(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.root / "superuser-password"
        pwfile.write_text(self._superuser_password + "\n")
        pwfile.chmod(0o600)
        if self._as_other_user:
            account = pwd.getpwnam(_RUN_AS)
            for path in (self.root, self.socket_dir, pwfile):
                os.chown(path, account.pw_uid, account.pw_gid)
        # The root stays private: the socket, the log and the password file are in it.
        self.root.chmod(0o700)
        try:
            self._run(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                      f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                      "--encoding=UTF8", "--no-locale", "--no-instructions", timeout_s=120)
        finally:
            pwfile.unlink(missing_ok=True)
        settings = {**self._settings, "unix_socket_directories": f"'{self.socket_dir}'"}
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# tests/support/postgres.py\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        if not self.host.startswith("127.") and self.host not in ("localhost", "::1"):
            # initdb lets in loopback clients only. Listening on another address (the machine's, for
            # Ray nodes in network namespaces of their own), let in the networks this machine is on
            # (`samenet`: those namespaces' bridge among them), with the same password auth.
            with open(self.data_dir / "pg_hba.conf", "a") as hba:
                hba.write("\n# tests/support/postgres.py\nhost all all samenet scram-sha-256\n")

    def _create_role_and_database(self) -> None:
        with self._admin() as conn:
            # psycopg sends the statement as text; the password is a literal, never logged by this helper.
            from psycopg import sql

            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(self.user), sql.Literal(self.password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(self.database), sql.Identifier(self.user)))

    @contextlib.contextmanager
    def _admin(self) -> Iterator[Any]:
        import psycopg

        if not self._running:
            raise PostgresError("the server is not running (start() it first)")
        with psycopg.connect(host=self.host, port=self.port, user="postgres", password=self._superuser_password,
                             dbname="postgres", autocommit=True, connect_timeout=10) as conn:
            yield conn

    def _halt(self, mode: str) -> None:
        if mode not in ("fast", "immediate"):
            raise ValueError("mode is 'fast' or 'immediate'")
        if not self._running:
            return
        try:
            self._pg_ctl("stop", "-m", mode, "-w", "-t", "30", timeout_s=40)
        except PostgresError:
            self._kill_postmaster()
        self._running = False

    def _kill_postmaster(self) -> None:
        """pg_ctl could not stop it: SIGKILL the postmaster; its backends notice
        and exit on their own within a second."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)

    def _log_tail(self, chars: int = 2000) -> str:
        try:
            return "\n--- postgres.log ---\n" + self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __repr__(self) -> str:  # no passwords
        return f"PostgresServer({self.url!r}, running={self._running})"
