"""A real IMAP server for tests and the demo: Dovecot from Debian's packages
(`dovecot-imapd`), started as the current user with a throwaway config.

Everything lives in one temporary directory: the config, a self-signed CA and
server certificate (trustme), a passwd-file of test users, the maildirs, the
log and Dovecot's runtime files. The server listens on 127.0.0.1 on a free
port with implicit TLS only (`ssl = required`, no plaintext listener), uses no
system users and touches nothing outside its directory. Messages are seeded
by writing RFC 5322 files straight into the maildir, with their flags in the
file name and their IMAP INTERNALDATE as the file's mtime, which is what
Dovecot reads for maildir.

    with DovecotServer(users={"ann@example.com": "s3cret"}) as server:
        server.deliver("ann@example.com", raw_bytes, seen=False)
        settings = server.adapter_settings("ann@example.com")  # for the imap adapter

Run as root (CI), Dovecot keeps its own unprivileged service users (`dovecot`,
`dovenull`, created by the package) and mail is accessed as `nobody`; run as
anyone else, every process stays that user (Dovecot's "rootless" mode). There
is no pure-Python fallback: when Dovecot is missing, `unavailable_reason()`
says so and callers skip (tests) or use another provider (demo).

The optional XOAUTH2 support points Dovecot's `oauth2` passdb at a tiny
token-introspection endpoint served from this process (`oauth_tokens`:
token -> user), so the adapter's AUTHENTICATE XOAUTH2 path, including the
failure challenge, runs against the real server.
"""

from __future__ import annotations

import json
import os
import pwd
import grp
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

__all__ = ["DovecotError", "DovecotServer", "dovecot_binary", "unavailable_reason"]

_SEARCH_PATH = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot", "/sbin/dovecot")


class DovecotError(RuntimeError):
    """Dovecot could not be started; the message holds the tail of its log."""


def dovecot_binary() -> str | None:
    """The dovecot executable, or None. /usr/sbin is often not on a user's PATH."""
    found = shutil.which("dovecot")
    if found:
        return found
    for path in _SEARCH_PATH:
        if os.access(path, os.X_OK):
            return path
    return None


def unavailable_reason() -> str | None:
    """Why a DovecotServer cannot run here, or None when it can."""
    if dovecot_binary() is None:
        return "dovecot is not installed (Debian: apt-get install dovecot-imapd; CI runs .ci/system-packages)"
    try:
        import trustme  # noqa: F401
    except ImportError:
        return "trustme is not installed (pip install -e '.[test]')"
    return None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _maildir_folder(root: Path, mailbox: str) -> Path:
    """Maildir++ layout, Dovecot's default for `maildir:`: INBOX is the root,
    other mailboxes are `.Name` beside it (hierarchy separator `.`)."""
    if mailbox.upper() == "INBOX":
        return root
    return root / ("." + mailbox)


class _Introspection(BaseHTTPRequestHandler):
    """RFC 7662-style token introspection for Dovecot's oauth2 passdb."""

    tokens: dict[str, str] = {}

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        token = (form.get("token") or [""])[0]
        user = self.tokens.get(token)
        body = {"active": True, "username": user} if user else {"active": False}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class DovecotServer:
    """One Dovecot instance on loopback. Not thread-safe; one per test module."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        *,
        root: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        max_userip_connections: int = 10,
        oauth_tokens: dict[str, str] | None = None,
        binary: str | None = None,
    ):
        self.users = dict(users or {"ann@example.com": "imap-test-password"})
        self.host = host
        self.port = port or 0
        self.max_userip_connections = max_userip_connections
        self.oauth_tokens = dict(oauth_tokens or {})
        self.binary = binary or dovecot_binary()
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="aicmo-dovecot-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._introspection: ThreadingHTTPServer | None = None
        self._prepared = False
        self._seq = 0

    # --- paths ---------------------------------------------------------------
    @property
    def ca_file(self) -> str:
        return str(self.root / "ca.pem")

    @property
    def log_file(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def config_file(self) -> Path:
        return self.root / "dovecot.conf"

    def maildir(self, user: str, mailbox: str = "INBOX") -> Path:
        return _maildir_folder(self.root / "mail" / user, mailbox)

    def adapter_settings(self, user: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Settings for the `imap` adapter that reach this server as `user`."""
        user = user or next(iter(self.users))
        settings = {"host": self.host, "port": self.port, "username": user, "password": self.users.get(user, ""),
                    "ca_file": self.ca_file, "timeout_s": 5.0}
        settings.update(overrides)
        return settings

    # --- lifecycle -----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 15.0) -> "DovecotServer":
        if self.running:
            return self
        reason = unavailable_reason() if self.binary is None else None
        if reason:
            raise DovecotError(reason)
        if not self._prepared:
            self._prepare()
        if not self.port:
            self.port = _free_port(self.host)
        self._start_introspection()
        self._write_config()
        (self.root / "run" / "master.pid").unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [str(self.binary), "-F", "-c", str(self.config_file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal is ours to forward, not the shell's
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                self._process = None
                raise DovecotError(f"dovecot exited at start-up: {err.strip()}\n{self.log_tail()}")
            if self._listening():
                return self
            time.sleep(0.02)
        self.stop()
        raise DovecotError(f"dovecot did not listen on {self.host}:{self.port} within {timeout_s}s\n{self.log_tail()}")

    def _listening(self) -> bool:
        """Whether the IMAPS port listens. On Linux read /proc/net/tcp rather
        than connect: a probing connection makes imap-login wake the auth
        process, and a stop soon after then waits 5 s for it."""
        table = Path("/proc/net/tcp")
        if table.exists():
            port = f":{self.port:04X}"
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[1].endswith(port) and fields[3] == "0A":  # 0A: LISTEN
                    return True
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the master stops its children and removes its pid file
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        if process is not None and process.stderr is not None:
            process.stderr.close()
        if self._introspection is not None:
            self._introspection.shutdown()
            self._introspection.server_close()
            self._introspection = None

    def cleanup(self) -> None:
        """Stop and remove the directory (only if this object created it)."""
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "DovecotServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no dovecot log)"

    # --- mail ------------------------------------------------------------------
    def deliver(self, user: str, raw: bytes, *, seen: bool = False, internal_date: datetime | float | None = None,
                mailbox: str = "INBOX") -> Path:
        """Put one message in `user`'s `mailbox`, as a new message or already \\Seen.

        `internal_date` (a datetime or epoch seconds) becomes the IMAP
        INTERNALDATE; by default it is now. Works while the server runs.
        """
        folder = self.maildir(user, mailbox)
        self._make_folder(folder)
        self._seq += 1
        base = f"{int(time.time())}.M{self._seq}P{os.getpid()}Q{uuid.uuid4().hex[:8]}.aicmo"
        tmp = folder / "tmp" / base
        tmp.write_bytes(raw)
        if internal_date is not None:
            stamp = internal_date.timestamp() if isinstance(internal_date, datetime) else float(internal_date)
            os.utime(tmp, (stamp, stamp))
        self._chown(tmp)
        final = folder / "cur" / f"{base}:2,S" if seen else folder / "new" / base
        os.rename(tmp, final)  # maildir delivery: atomic, never a half-written message
        return final

    def flags(self, user: str, mailbox: str = "INBOX") -> dict[str, str]:
        """Every message of the mailbox by its Message-ID header: its maildir
        flags (`S` for \\Seen, '' for none), read from the file names."""
        folder = self.maildir(user, mailbox)
        out: dict[str, str] = {}
        for sub in ("new", "cur"):
            for path in sorted((folder / sub).glob("*")) if (folder / sub).is_dir() else []:
                flags = path.name.split(":2,", 1)[1] if ":2," in path.name else ""
                out[self._message_id(path) or path.name] = flags
        return out

    @staticmethod
    def _message_id(path: Path) -> str | None:
        import email
        import email.policy

        try:
            with open(path, "rb") as fh:
                headers = email.message_from_binary_file(fh, policy=email.policy.compat32, _class=None)
            value = headers.get("Message-ID")
            return str(value).strip() if value else None
        except OSError:
            return None  # renamed by Dovecot between listing and reading

    # --- internals -------------------------------------------------------------
    def _mail_ids(self) -> tuple[int, int]:
        """uid, gid that mail is accessed as: ourselves, or `nobody` under root."""
        if os.geteuid() != 0:
            return os.getuid(), os.getgid()
        nobody = pwd.getpwnam("nobody")
        return nobody.pw_uid, nobody.pw_gid

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            uid, gid = self._mail_ids()
            os.chown(path, uid, gid)

    def _make_folder(self, folder: Path) -> None:
        for part in (folder.parent, folder, folder / "cur", folder / "new", folder / "tmp"):
            if not part.exists():
                part.mkdir(mode=0o700)
                self._chown(part)

    def _prepare(self) -> None:
        import trustme  # a test dependency; imported only when a server is built

        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # mail processes (nobody under root) must reach their maildir
        if os.geteuid() == 0:
            for parent in self.root.resolve().parents:
                if not os.stat(parent).st_mode & 0o001:
                    raise DovecotError(f"{parent} is not searchable by others, so Dovecot's mail processes "
                                       f"(user nobody) cannot reach {self.root}; set TMPDIR to a directory they can")
        for name in ("run", "state", "mail", "home"):
            (self.root / name).mkdir(exist_ok=True)
        for name in ("mail", "home"):
            os.chmod(self.root / name, 0o755)
            self._chown(self.root / name)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(self.ca_file)
        cert.private_key_pem.write_to_path(str(self.root / "server-key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(self.root / "server-cert.pem"))
        os.chmod(self.root / "server-key.pem", 0o600)
        for user in self.users:
            self._make_folder(self.maildir(user))
            home = self.root / "home" / user
            home.mkdir(exist_ok=True)
            self._chown(home)
        self._prepared = True

    def _start_introspection(self) -> None:
        if not self.oauth_tokens or self._introspection is not None:
            return
        handler = type("Introspection", (_Introspection,), {"tokens": self.oauth_tokens})
        self._introspection = ThreadingHTTPServer((self.host, 0), handler)
        threading.Thread(target=self._introspection.serve_forever, name="dovecot-oauth", daemon=True).start()

    def _write_config(self) -> None:
        passwd = "".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in self.users.items())
        (self.root / "passwd").write_text(passwd)
        os.chmod(self.root / "passwd", 0o644)
        uid, gid = self._mail_ids()
        if os.geteuid() == 0:
            identity = ""  # the package's own `dovecot` and `dovenull` users
        else:
            user = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
            identity = (f"default_internal_user = {user}\ndefault_internal_group = {group}\n"
                        f"default_login_user = {user}\n")
        oauth = ""
        mechanisms = "plain login"
        if self._introspection is not None:
            url = f"http://{self.host}:{self._introspection.server_address[1]}/introspect"
            (self.root / "oauth2.conf").write_text(
                f"introspection_mode = post\nintrospection_url = {url}\n"
                "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
            )
            oauth = (f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                     f"  args = {self.root}/oauth2.conf\n}}\n")
            mechanisms += " xoauth2 oauthbearer"
        r = self.root
        self.config_file.write_text(f"""# Throwaway Dovecot config written by actors.sandbox.dovecot; safe to delete.
base_dir = {r}/run
state_dir = {r}/state
instance_name = aicmo-{self.port}
listen = {self.host}
protocols = imap
ssl = required
ssl_cert = <{r}/server-cert.pem
ssl_key = <{r}/server-key.pem
log_path = {r}/dovecot.log
auth_failure_delay = 0
# No stats process: nothing here reads it, and a process waiting for its
# handshake holds up a stop by 5 s.
stats_writer_socket_path =
auth_mechanisms = {mechanisms}
mail_max_userip_connections = {self.max_userip_connections}
{identity}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/passwd
}}
{oauth}userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/home/%u
}}
mail_location = maildir:{r}/mail/%u
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {self.port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No auth penalty: tests fail logins on purpose, and Dovecot would delay
  # every later login from 127.0.0.1 by up to 15 s. A mode-0 socket is the
  # documented way to turn the penalty off.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
""")
