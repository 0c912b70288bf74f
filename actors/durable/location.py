"""Where a gateway's state lives: `state.url` read into a location (the store
is opened there by opening.py).

- a directory, or `sqlite:///abs/path.db`: the embedded SQLite file (one
  machine, or nodes that share that directory);
- `postgresql://user@host:port/db` (or `postgres://`): a PostgreSQL server
  every node reaches. The password comes from the URL (written there as a
  `${VAR}` reference, read from the environment when the config loads), or
  from libpq's own `PGPASSWORD` or `PGPASSFILE` on each node. It never
  appears in `display`, which is what logs, status and errors show.
"""

from __future__ import annotations

import enum
import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import msgspec

from actors.errors import InvalidStateUrl

POSTGRES_SCHEMES = ("postgresql", "postgres")
# Query parameters libpq reads that are secrets (or say where one is): never
# shown. `password` moves to the location's password; the others stay in the
# conninfo libpq gets, out of `display`.
SECRET_PARAMS = ("password", "sslpassword", "passfile")
# libpq's sslmode values: which encrypt, and which also check the server.
ENCRYPTING = frozenset({"require", "verify-ca", "verify-full"})
CLEARTEXT_POSSIBLE = frozenset({"disable", "allow", "prefer"})


class Transport(str, enum.Enum):
    """How the store's traffic travels: what status, doctor and self-check report."""

    LOCAL = "local"                     # an SQLite file, or PostgreSQL on this machine's loopback or socket
    VERIFIED = "tls-verified"           # sslmode=verify-full: encrypted, the server's name checked
    ENCRYPTED = "tls-unverified"        # require / verify-ca: encrypted; the server's name is not checked
    CLEARTEXT = "cleartext-allowed"     # disable / allow / prefer, written in the URL: the config opted out

    def __str__(self) -> str:
        return self.value


class StoreLocation(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["sqlite", "postgresql"]
    display: str                     # the URL without a password
    path: str | None = None          # sqlite: the file (":memory:" for tests)
    conninfo: str | None = None      # postgresql: the URL without a password (libpq's other secret options kept)
    password: str | None = None      # postgresql: from the URL, if it held one
    host: str | None = None          # postgresql: the server's host
    sslmode: str | None = None       # postgresql: as written in the URL's query

    @property
    def transport(self) -> Transport:
        if self.kind == "sqlite" or self.host is None or is_local_host(self.host):
            return Transport.LOCAL
        if self.sslmode == "verify-full":
            return Transport.VERIFIED
        if self.sslmode in ENCRYPTING:
            return Transport.ENCRYPTED
        return Transport.CLEARTEXT

    @property
    def directory(self) -> Path | None:
        """The local directory the state lives in (SQLite only)."""
        if self.kind != "sqlite" or self.path in (None, ":memory:"):
            return None
        return Path(self.path).expanduser().parent

    def secrets(self) -> list[str]:
        """Every secret this location holds, to mask wherever a driver's message might quote one."""
        found = [self.password] if self.password else []
        if self.conninfo:
            found += [v for k, v in parse_qsl(urlsplit(self.conninfo).query) if k in SECRET_PARAMS and v]
        return found


def parse_state_url(url: str) -> StoreLocation:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite://"):]
        if path == "/:memory:":
            path = ":memory:"
        return StoreLocation(kind="sqlite", path=path, display=url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else None
    if scheme in POSTGRES_SCHEMES:
        return _postgres(url)
    if scheme is not None:
        raise InvalidStateUrl(f"unsupported state store scheme {scheme!r}: use a directory, sqlite:///path.db "
                              "or postgresql://user@host:port/db")
    return StoreLocation(kind="sqlite", path=str(Path(url) / "state.db"), display=url)


def _postgres(url: str) -> StoreLocation:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        # Never the parse error's text: urlsplit quotes what follows the
        # user's colon, the password whenever it holds `/`, `#` or `?`.
        raise InvalidStateUrl("not a PostgreSQL URL (its port is not a number, or a password holds `/`, `#`, "
                              "`?` or `@` not percent-encoded): expected postgresql://user@host:port/db") from None
    if not parts.hostname or not parts.path.strip("/"):
        raise InvalidStateUrl("a PostgreSQL state URL needs a host and a database: postgresql://user@host:port/db")
    user = parts.username
    password = unquote(parts.password) if parts.password is not None else None
    query = parse_qsl(parts.query, keep_blank_values=True)
    password = next((v for k, v in query if k == "password"), None) or password
    kept = [(k, v) for k, v in query if k != "password"]
    shown = [(k, v) for k, v in kept if k not in SECRET_PARAMS]
    sslmode = next((v for k, v in query if k == "sslmode"), None)
    if sslmode is not None and sslmode not in ENCRYPTING | CLEARTEXT_POSSIBLE:
        raise InvalidStateUrl(f"sslmode {sslmode[:20]!r} is not one of libpq's: use verify-full, verify-ca, require, "
                              "or (cleartext allowed) prefer, allow, disable")
    if sslmode is None and not is_local_host(parts.hostname):
        # libpq's default (prefer) falls back to cleartext without a word and
        # never checks the server: over a network, the config must choose.
        raise InvalidStateUrl(
            f"the PostgreSQL state URL reaches {parts.hostname} over the network without an sslmode: libpq would "
            "try TLS, fall back to cleartext and never check the server. Add ?sslmode=verify-full (with "
            "&sslrootcert=/path/to/ca.pem; the safe choice), or ?sslmode=require (encrypted, server unchecked), "
            "or ?sslmode=disable to accept cleartext on a network you trust")
    netloc = (f"{user}@" if user else "") + parts.hostname + (f":{port}" if port else "")
    conninfo = urlunsplit(("postgresql", netloc, parts.path, urlencode(kept), ""))
    display = urlunsplit(("postgresql", netloc, parts.path, urlencode(shown), ""))
    return StoreLocation(kind="postgresql", display=display, conninfo=conninfo, password=password or None,
                         host=parts.hostname, sslmode=sslmode)


def is_local_host(host: str) -> bool:
    """A host whose traffic never leaves this machine: a loopback address,
    `localhost`, or a Unix socket directory."""
    if unquote(host).startswith("/") or host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def without_password(url: str) -> str:
    """`url` as it may be shown: a PostgreSQL URL loses its password."""
    try:
        return parse_state_url(url).display
    except InvalidStateUrl:
        return "<an invalid state URL>"
