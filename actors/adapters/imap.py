"""Reply fetching over IMAP4rev1 (RFC 3501) with aioimaplib, implicit TLS on 993.

One call, one connection: connect (TLS from the first byte), LOGIN or
AUTHENTICATE XOAUTH2, SELECT the mailbox, UID SEARCH, UID FETCH
`(BODY.PEEK[] INTERNALDATE)` in batches, LOGOUT. BODY.PEEK[] leaves \\Seen
alone (RFC 3501 6.4.5), so a fetch only reads and may be repeated at will.
With `mark_seen: true` the returned replies are then flagged \\Seen
(`UID STORE +FLAGS.SILENT (\\Seen)`): the gateway's way of saying "handled",
so that the next `unseen` search skips them.

Search: `UNSEEN` (setting `search: unseen`, the default) or `ALL`, plus
`SINCE <date>` when the payload gives `since`. SINCE compares dates only,
"disregarding time and timezone" (RFC 3501 6.4.4), so we ask from the day
before and keep the messages whose INTERNALDATE is at or after `since`.
Candidates are taken newest UID first, `limit` at most; the value lists them
newest first by arrival time.

Connections: IMAP servers cap simultaneous connections per account (Gmail
about 15, Dovecot's default 10 per user and IP), so `max_connections` bounds
how many this adapter opens at once; further calls wait for a free one.

Errors map in one place, `_classify_status` (tagged NO/BAD and BYE texts, by
RFC 5530 response code first, then words) and `_classify_exception`:

    LOGIN/AUTHENTICATE NO        -> AuthError ([LIMIT]/"too many" -> RateLimited,
                                    [UNAVAILABLE] -> TransientError)
    SELECT NO [NONEXISTENT]      -> ProviderRejected (the mailbox does not exist)
    BYE / "too many connections" -> RateLimited; other BYE -> TransientError
    connection refused or reset  -> TransientError
    no answer in time            -> AttemptTimeout
    an untagged reply we cannot read -> MalformedResponse
    our own AttributeError/TypeError/KeyError -> raised as is (the actor's `crashed`)

The transport is injectable: `transport` is a factory `(host, port, timeout,
ssl_context) -> client` returning an object with aioimaplib's IMAP4 API
(`wait_hello_from_server`, `login`, `xoauth2`, `select`, `uid_search`, `uid`,
`noop`, `logout`); unit tests pass a fake.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import ssl
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from actors.adapters._mail_parsing import iso_utc, parse_reply, parse_time
from actors.adapters.base import Adapter, AdapterSettings
from actors.errors import (
    AttemptTimeout,
    AuthError,
    MalformedResponse,
    ProviderError,
    ProviderRejected,
    RateLimited,
    TransientError,
)
from actors.messages import CallContext
from actors.payloads import FetchReplies, Payload

__all__ = ["ImapAdapter", "ImapSettings"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CODE = re.compile(r"^\s*\[([A-Za-z-]+)")
_FETCH_START = re.compile(rb"^\s*(\d+)\s+FETCH\s*\(", re.IGNORECASE)
_LITERAL = re.compile(rb"\{(\d+)\}\s*$")
_UID = re.compile(rb"\bUID\s+(\d+)", re.IGNORECASE)
_INTERNALDATE = re.compile(rb'INTERNALDATE\s+"([^"]+)"', re.IGNORECASE)
_RATE_WORDS = ("too many", "maximum number of connections", "connection limit", "rate limit", "try again later")


class ImapSettings(AdapterSettings):
    host: str = "imap.gmail.com"
    port: int = Field(993, ge=1, le=65535)
    username: str
    password: SecretStr | None = None
    oauth_token: SecretStr | None = None
    auth_method: Literal["login", "xoauth2"] = "login"
    mailbox: str = Field("INBOX", description="read when the payload names the default INBOX")
    verify_tls: bool = True
    ca_file: str | None = None
    timeout_s: float = Field(15.0, gt=0, description="per IMAP command")
    search: Literal["unseen", "all"] = "unseen"
    mark_seen: bool = False
    max_connections: int = Field(2, ge=1, le=50, description="simultaneous IMAP connections this provider opens")
    fetch_batch: int = Field(50, ge=1, le=500, description="messages per UID FETCH")

    @model_validator(mode="after")
    def _credentials_for_method(self) -> "ImapSettings":
        if self.auth_method == "login" and self.password is None:
            raise ValueError("auth_method `login` needs `password`")
        if self.auth_method == "xoauth2" and self.oauth_token is None:
            raise ValueError("auth_method `xoauth2` needs `oauth_token`")
        return self


# --- error mapping: the one place -----------------------------------------------
def _text(lines: Any) -> str:
    """The human part of a response: its last line (the tagged status text)."""
    if not lines:
        return ""
    last = lines[-1]
    if isinstance(last, (bytes, bytearray)):
        last = bytes(last).decode("utf-8", errors="replace")
    return " ".join(str(last).split())[:300]


def _classify_status(stage: str, result: str, text: str, provider: str, mailbox: str | None = None) -> ProviderError:
    """A NO, BAD or BYE at `stage` (connect, login, select, search, fetch, store, noop) as our error kind."""
    match = _CODE.match(text)
    code = match.group(1).upper() if match else ""
    lower = text.lower()
    message = f"{provider}: IMAP {stage} {result}: {text}" if text else f"{provider}: IMAP {stage} {result}"
    if code in ("LIMIT", "OVERQUOTA") or any(word in lower for word in _RATE_WORDS):
        return RateLimited(message)
    if code in ("UNAVAILABLE", "INUSE", "SERVERBUG") or "shutting down" in lower:
        return TransientError(message)
    if result == "BYE":
        return TransientError(message)
    if stage == "login":
        return AuthError(message)
    if code in ("AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED", "NOPERM", "PRIVACYREQUIRED"):
        return AuthError(message)
    if stage == "select":
        if code in ("NONEXISTENT", "TRYCREATE") or any(w in lower for w in ("exist", "unknown mailbox", "not found")):
            return ProviderRejected(f"{provider}: mailbox {mailbox!r} does not exist ({text})")
        return ProviderRejected(message)
    if result == "BAD":
        return ProviderRejected(message)  # the server refused our command's syntax
    return TransientError(message)


def _classify_exception(exc: BaseException, stage: str, provider: str, timeout_s: float) -> ProviderError:
    import aioimaplib

    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, aioimaplib.CommandTimeout)):
        return AttemptTimeout(f"{provider}: IMAP {stage}: no answer within {timeout_s:g}s")
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or exc
        return TransientError(f"{provider}: TLS certificate verification failed at {stage}: {reason}; "
                              "check `ca_file` or the server's certificate")
    if isinstance(exc, ssl.SSLError):
        return TransientError(f"{provider}: TLS failed at {stage}: {exc.reason or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return TransientError(f"{provider}: IMAP connection refused ({exc.strerror or exc})")
    if isinstance(exc, (ConnectionError, OSError, EOFError)):
        return TransientError(f"{provider}: IMAP {stage}: {type(exc).__name__}: {exc}")
    if isinstance(exc, aioimaplib.AioImapException):
        return TransientError(f"{provider}: IMAP {stage}: {type(exc).__name__}: {exc}")
    if isinstance(exc, (ValueError, IndexError, UnicodeError)):
        # What aioimaplib's parser raises on bytes it cannot read: the server's doing.
        return MalformedResponse(f"{provider}: IMAP {stage}: unreadable answer ({type(exc).__name__}: {exc})")
    if isinstance(exc, (AttributeError, TypeError, KeyError, NameError, AssertionError)):
        # A bug on our side (or in the client library): it must not be counted as the
        # provider's malformed answer. Raised as is, the provider actor reports it as `crashed`.
        raise exc
    return TransientError(f"{provider}: IMAP {stage}: {type(exc).__name__}: {exc}")


# --- small protocol helpers --------------------------------------------------------
def imap_date(moment: datetime) -> str:
    """RFC 3501 `date` (d-Mon-yyyy), month names fixed, not from the locale."""
    return f"{moment.day}-{_MONTHS[moment.month - 1]}-{moment.year}"


def parse_internaldate(value: str) -> datetime | None:
    """`25-Nov-2026 19:08:12 +0000` (day may be space-padded) as an aware datetime."""
    match = re.match(r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})", value)
    if not match:
        return None
    day, mon, year, hh, mm, ss, sign, oh, om = match.groups()
    try:
        month = [m.lower() for m in _MONTHS].index(mon.lower()) + 1
        offset = timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
        return datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset))
    except ValueError:
        return None


def encode_mailbox(name: str) -> str:
    """A mailbox name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    encoded = "".join(out)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_search(lines: list[Any]) -> list[int]:
    """UIDs from a UID SEARCH response (`* SEARCH 3 5 8`; aioimaplib hands `3 5 8`)."""
    uids: list[int] = []
    for line in lines[:-1]:  # the last line is the tagged status text
        if isinstance(line, (bytes, bytearray)):
            line = bytes(line).decode("ascii", errors="replace")
        text = str(line).strip()
        if text.upper().startswith("SEARCH"):
            text = text[6:].strip()
        if not text:
            continue
        if not re.fullmatch(r"[\d ]+", text):
            continue  # an unrelated untagged line (EXISTS, FLAGS) routed to this command
        uids.extend(int(t) for t in text.split())
    return uids


def parse_fetch(lines: list[Any]) -> list[tuple[int | None, datetime | None, bytes]]:
    """(uid, internal date, raw message) per message of a UID FETCH response.

    aioimaplib hands a fetched literal as its own item, right after the line
    that announced it with `{n}`; the items the server sent after the literal
    (INTERNALDATE may come after BODY[]) arrive as a further line. Untagged
    FETCH responses without a body (flag updates) are skipped.
    """
    records: list[tuple[int | None, datetime | None, bytes]] = []
    uid: int | None = None
    date: datetime | None = None
    body: bytes | None = None
    started = False
    expect_literal: int | None = None

    def close() -> None:
        if started and body is not None:
            records.append((uid, date, body))

    for item in lines:
        if isinstance(item, str):
            item = item.encode()
        if not isinstance(item, (bytes, bytearray)):
            raise MalformedResponse(f"FETCH response holds a {type(item).__name__}")
        data = bytes(item)
        if expect_literal is not None:
            body, expect_literal = data, None
            continue
        start = _FETCH_START.match(data)
        if start:
            close()
            started, uid, date, body = True, None, None, None
        if not started:
            continue
        if (m := _UID.search(data)) and uid is None:
            uid = int(m.group(1))
        if (m := _INTERNALDATE.search(data)) and date is None:
            date = parse_internaldate(m.group(1).decode("ascii", errors="replace"))
        literal = _LITERAL.search(data)
        if literal and re.search(rb"BODY\[\]\s*(<\d+>)?\s*\{\d+\}\s*$", data, re.IGNORECASE):
            expect_literal = int(literal.group(1))
    close()
    return records


def _challenge_status(lines: list[Any]) -> str | None:
    """The `status` of an XOAUTH2 failure challenge (`+ <base64 JSON>`), if one came."""
    for line in lines:
        if isinstance(line, (bytes, bytearray)):
            line = bytes(line).decode("ascii", errors="replace")
        text = str(line).strip()
        if text.startswith("+"):
            text = text[1:].strip()
        try:
            decoded = json.loads(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError, TypeError):
            continue
        if isinstance(decoded, dict) and "status" in decoded:
            return str(decoded["status"])
    return None


def default_transport(host: str, port: int, timeout: float, ssl_context: ssl.SSLContext) -> Any:
    import aioimaplib  # imported lazily: only this provider's actor loads it

    return aioimaplib.IMAP4_SSL(host=host, port=port, timeout=timeout, ssl_context=ssl_context)


# --- one IMAP session ----------------------------------------------------------------
class _Session:
    """One connection: each command raced against the deadline and the
    connection's loss, its failures mapped to our kinds."""

    def __init__(self, adapter: "ImapAdapter", deadline: float):
        self.adapter = adapter
        self.settings: ImapSettings = adapter.settings
        self.provider = adapter.provider
        self.deadline = deadline
        self.client: Any = None
        self.bye: str | None = None
        self.lost: asyncio.Future[None] | None = None

    def _remaining(self) -> float:
        return max(0.0, min(self.settings.timeout_s, self.deadline - time.monotonic()))

    def _watch(self) -> None:
        """Notice a BYE and a dropped connection, which aioimaplib otherwise
        reports only as a command that never completes; answer an XOAUTH2
        failure challenge with the empty response the SASL exchange expects
        (aioimaplib would wait for the tagged NO forever)."""
        protocol = getattr(self.client, "protocol", None)
        loop = asyncio.get_running_loop()
        self.lost = loop.create_future()
        if protocol is None:
            return
        lost = self.lost

        def on_lost(exc: Exception | None) -> None:
            if not lost.done():
                lost.set_result(None)

        protocol.conn_lost_cb = on_lost
        received = protocol.data_received

        def data_received(data: bytes) -> None:
            for line in data.split(b"\r\n"):
                if line.startswith(b"* BYE"):
                    self.bye = line[5:].strip().decode("utf-8", errors="replace")
                elif line.startswith(b"+ ") and self._authenticating(protocol) and len(line) > 2:
                    transport = getattr(protocol, "transport", None)
                    if transport is not None:
                        transport.write(b"\r\n")
            received(data)

        protocol.data_received = data_received

    @staticmethod
    def _authenticating(protocol: Any) -> bool:
        pending = getattr(protocol, "pending_sync_command", None)
        return getattr(pending, "name", None) == "AUTHENTICATE"

    async def run(self, stage: str, make: Any) -> Any:
        """Await `make()` with the remaining time; map every failure."""
        timeout = self._remaining()
        if timeout <= 0:
            raise AttemptTimeout(f"{self.provider}: IMAP {stage}: the attempt's time ran out")
        task = asyncio.ensure_future(make())
        waiters: set[asyncio.Future[Any]] = {task}
        if self.lost is not None:
            waiters.add(self.lost)
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task not in done:
            task.cancel()
            if self.lost is not None and self.lost in done:
                raise self._dropped(stage)
            raise AttemptTimeout(f"{self.provider}: IMAP {stage}: no answer within {timeout:.3g}s")
        try:
            return task.result()
        except BaseException as exc:  # noqa: BLE001 - sorted into our kinds
            if self.bye is not None:
                raise self._dropped(stage) from None
            raise _classify_exception(exc, stage, self.provider, timeout) from None

    def _dropped(self, stage: str) -> ProviderError:
        if self.bye is not None:
            return _classify_status(stage, "BYE", self.bye, self.provider)
        return TransientError(f"{self.provider}: IMAP {stage}: the server closed the connection")

    def _check(self, stage: str, response: Any, mailbox: str | None = None) -> list[Any]:
        result = getattr(response, "result", None)
        lines = getattr(response, "lines", None)
        if not isinstance(result, str) or not isinstance(lines, list):
            raise MalformedResponse(f"{self.provider}: IMAP {stage}: unexpected answer {str(response)[:120]!r}")
        if result != "OK":
            if result not in ("NO", "BAD"):
                result = "BYE" if self.bye is not None else result
                text = self.bye if self.bye is not None else _text(lines)
            else:
                text = _text(lines)
            error = _classify_status(stage, result, text, self.provider, mailbox)
            if stage == "login" and self.settings.auth_method == "xoauth2" and isinstance(error, AuthError):
                status = _challenge_status(lines)
                if status:
                    error = AuthError(f"{error.message} (XOAUTH2 status {status}: the access token is "
                                      "invalid, expired or lacks the https://mail.google.com/ scope)")
            raise error
        return lines

    # --- the protocol steps ---------------------------------------------------------
    async def open(self) -> None:
        s = self.settings
        try:
            context = ssl.create_default_context(cafile=s.ca_file) if s.ca_file else ssl.create_default_context()
        except (OSError, ssl.SSLError) as exc:
            raise TransientError(f"{self.provider}: cannot load `ca_file` {s.ca_file!r}: {exc}") from None
        if not s.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        factory = self.adapter.transport or default_transport
        try:
            self.client = factory(s.host, s.port, s.timeout_s, context)
        except BaseException as exc:  # noqa: BLE001
            raise _classify_exception(exc, "connect", self.provider, s.timeout_s) from None
        self._watch()
        await self.run("connect", self.client.wait_hello_from_server)
        if self.bye is not None:  # greeted with BYE: the server will not serve us now
            raise _classify_status("connect", "BYE", self.bye, self.provider)

    async def login(self) -> None:
        s = self.settings
        if s.auth_method == "xoauth2":
            assert s.oauth_token is not None
            token = s.oauth_token.get_secret_value()
            if not hasattr(self.client, "xoauth2"):
                raise AuthError(f"{self.provider}: this aioimaplib has no XOAUTH2 support; upgrade aioimaplib")
            response = await self.run("login", lambda: self.client.xoauth2(s.username, token))
        else:
            assert s.password is not None
            password = s.password.get_secret_value()
            response = await self.run("login", lambda: self.client.login(s.username, password))
        self._check("login", response)

    async def select(self, mailbox: str) -> None:
        response = await self.run("select", lambda: self.client.select(encode_mailbox(mailbox)))
        self._check("select", response, mailbox)

    async def search(self, criteria: list[str]) -> list[int]:
        # charset=None: no `CHARSET utf-8` prefix, which some servers refuse; our criteria are ASCII.
        response = await self.run("search", lambda: self.client.uid_search(*criteria, charset=None))
        return parse_search(self._check("search", response))

    async def fetch(self, uids: list[int]) -> list[tuple[int | None, datetime | None, bytes]]:
        uidset = ",".join(str(u) for u in uids)
        response = await self.run("fetch", lambda: self.client.uid("fetch", uidset, "(BODY.PEEK[] INTERNALDATE)"))
        lines = self._check("fetch", response)
        try:
            return parse_fetch(lines)
        except MalformedResponse as exc:
            raise MalformedResponse(f"{self.provider}: IMAP fetch: {exc.message}") from None

    async def mark_seen(self, uids: list[int]) -> None:
        uidset = ",".join(str(u) for u in uids)
        response = await self.run("store", lambda: self.client.uid("store", uidset, "+FLAGS.SILENT", "(\\Seen)"))
        self._check("store", response)

    async def noop(self) -> None:
        self._check("noop", await self.run("noop", self.client.noop))

    async def close(self) -> None:
        """LOGOUT, briefly; if the server does not answer, drop the connection."""
        if self.client is None:
            return
        client, self.client = self.client, None
        try:
            state = client.get_state() if hasattr(client, "get_state") else None
            if state not in (None, "LOGOUT", "STARTED", "CONNECTED") and (self.lost is None or not self.lost.done()):
                await asyncio.wait_for(client.logout(), min(2.0, self.settings.timeout_s))
        except BaseException:  # noqa: BLE001 - closing must never replace the call's own outcome
            pass
        finally:
            connecting = getattr(client, "_client_task", None)  # aioimaplib's connection attempt
            if isinstance(connecting, asyncio.Future) and not connecting.done():
                connecting.cancel()
            transport = getattr(getattr(client, "protocol", None), "transport", None)
            if transport is not None:
                transport.close()
            if self.lost is not None and not self.lost.done():
                self.lost.cancel()


# --- the adapter -----------------------------------------------------------------------
class ImapAdapter(Adapter):
    name = "imap"
    Settings = ImapSettings
    capabilities = frozenset({"reply_fetching"})
    auth_settings = ("username", "password", "oauth_token", "auth_method")
    has_probe = True
    # A fetch only reads (BODY.PEEK[]): asking again cannot act twice. With
    # mark_seen the flags are set again, which changes nothing.
    resends_deduplicated = frozenset({"fetch_replies"})

    def __init__(self, settings: ImapSettings, **kw: Any):
        super().__init__(settings, **kw)
        self._connections: asyncio.Semaphore | None = None

    def _mailbox(self, payload: FetchReplies) -> str:
        # The payload's mailbox wins unless it is the contract's default.
        return self.settings.mailbox if payload.mailbox == "INBOX" else payload.mailbox

    def _criteria(self, since: datetime | None) -> list[str]:
        criteria = ["UNSEEN"] if self.settings.search == "unseen" else []
        if since is not None:
            # SINCE ignores the time and the timezone: start a day early, filter exactly afterwards.
            criteria += ["SINCE", imap_date((since - timedelta(days=1)).astimezone(timezone.utc))]
        return criteria or ["ALL"]

    def _limit(self) -> asyncio.Semaphore:
        if self._connections is None:
            self._connections = asyncio.Semaphore(self.settings.max_connections)
        return self._connections

    async def fetch_replies(self, payload: FetchReplies, ctx: CallContext) -> dict[str, Any]:
        deadline = time.monotonic() + ctx.timeout_s
        since = parse_time(payload.since) if payload.since else None
        mailbox = self._mailbox(payload)
        async with self._limit():
            session = _Session(self, deadline)
            try:
                await session.open()
                await session.login()
                await session.select(mailbox)
                uids = sorted(set(await session.search(self._criteria(since))), reverse=True)
                replies = await self._collect(session, uids, since, payload.limit)
                marked = await self._mark(session, replies) if self.settings.mark_seen and replies else False
            finally:
                await session.close()
        return {"replies": replies, "mailbox": mailbox, "order": "newest_first", "marked_seen": marked}

    async def _collect(self, session: _Session, uids: list[int], since: datetime | None,
                       limit: int) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = []
        batch = self.settings.fetch_batch
        for start in range(0, len(uids), batch):
            for uid, arrived, raw in await session.fetch(uids[start:start + batch]):
                reply = parse_reply(raw, received_at=arrived, fallback_id=f"imap-uid-{uid}" if uid else None)
                moment = arrived or (parse_time(reply["received_at"]) if reply["received_at"] else None)
                if since is not None and (moment is None or moment < since):
                    continue
                reply["imap_uid"] = uid
                replies.append(reply)
            if len(replies) >= limit:
                break
        replies.sort(key=lambda r: (r["received_at"] or "", r["imap_uid"] or 0), reverse=True)
        return replies[:limit]

    async def _mark(self, session: _Session, replies: list[dict[str, Any]]) -> bool:
        """Flag the returned replies \\Seen. The replies are already read: a
        failure here is reported in the value, never turned into a failed
        fetch that would lose them."""
        uids = [r["imap_uid"] for r in replies if r.get("imap_uid")]
        if not uids:
            return False
        try:
            await session.mark_seen(uids)
        except ProviderError:
            return False
        return True

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        s = self.settings
        assert isinstance(payload, FetchReplies)
        since = parse_time(payload.since) if payload.since else None
        auth = f"AUTHENTICATE XOAUTH2 <{s.username}, token removed>" if s.auth_method == "xoauth2" \
            else f"LOGIN {s.username} <password removed>"
        commands = [auth, f"SELECT {encode_mailbox(self._mailbox(payload))}",
                    "UID SEARCH " + " ".join(self._criteria(since)),
                    "UID FETCH <found uids> (BODY.PEEK[] INTERNALDATE)"]
        if s.mark_seen:
            commands.append("UID STORE <returned uids> +FLAGS.SILENT (\\Seen)")
        commands.append("LOGOUT")
        return self.would_send(method, {"host": s.host, "port": s.port, "tls": "implicit", "commands": commands,
                                        "since": iso_utc(since) if since else None, "limit": payload.limit})

    async def probe(self) -> None:
        """CONNECT, LOGIN, NOOP, LOGOUT: proves reachability and credentials, reads no mail."""
        async with self._limit():
            session = _Session(self, time.monotonic() + self.settings.timeout_s * 3)
            try:
                await session.open()
                await session.login()
                await session.noop()
            finally:
                await session.close()
