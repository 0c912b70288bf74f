"""One IMAP session over aioimaplib: connect (TLS from the first byte),
then each command raced against the attempt's deadline and the
connection's loss. aioimaplib reports a BYE or a dropped connection only as
a command that never completes, and waits forever on a failed XOAUTH2
exchange: the session watches its protocol object for both (`_watch`), so
it depends on aioimaplib's internals (`protocol.data_received`,
`conn_lost_cb`, `pending_sync_command`, `_client_task`): pyproject.toml
bounds aioimaplib's version for that reason.

What aioimaplib and the network raise becomes our kinds by one table,
`AIOIMAPLIB_ERRORS` (errormap.py); what the server answers, by
imap_protocol.py. `ImapClient` is the transport seam: unit tests pass a
factory of fakes.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from actors.adapters.errormap import RAISE, ExceptionMap
from actors.adapters.replies.imap_protocol import (
    challenge_status,
    classify_status,
    encode_mailbox,
    parse_fetch,
    parse_search,
    status_text,
)
from actors.adapters.tls import client_context
from actors.errors import AttemptTimeout, AuthError, MalformedResponse, ProviderError, TransientError

__all__ = ["AIOIMAPLIB_ERRORS", "ImapCall", "ImapClient", "ImapClientFactory", "Session", "classify_exception",
           "default_transport"]


class ImapClient(Protocol):
    """What the session uses of aioimaplib.IMAP4_SSL (each command answers a
    Response with `result` and `lines`)."""

    async def wait_hello_from_server(self) -> Any: ...
    async def login(self, user: str, password: str) -> Any: ...
    async def xoauth2(self, user: str, token: str) -> Any: ...
    async def select(self, mailbox: str = ...) -> Any: ...
    async def uid_search(self, *criteria: str, charset: str | None = ...) -> Any: ...
    async def uid(self, command: str, *args: str) -> Any: ...
    async def noop(self) -> Any: ...
    async def logout(self) -> Any: ...


# (host, port, timeout, ssl_context) -> a client
ImapClientFactory = Callable[[str, int, float, ssl.SSLContext], ImapClient]


def default_transport(host: str, port: int, timeout: float, ssl_context: ssl.SSLContext) -> ImapClient:
    import aioimaplib  # imported lazily: only this provider's actor loads it

    return aioimaplib.IMAP4_SSL(host=host, port=port, timeout=timeout, ssl_context=ssl_context)


# --- exceptions as our kinds: the one table ------------------------------------------
@dataclass(frozen=True)
class ImapCall:
    """What a rule knows of the command that failed."""

    provider: str
    stage: str          # connect, login, select, search, fetch, store, noop
    timeout_s: float


def _timeout(exc: BaseException, at: ImapCall) -> ProviderError:
    return AttemptTimeout(f"{at.provider}: IMAP {at.stage}: no answer within {at.timeout_s:g}s")


def _certificate(exc: BaseException, at: ImapCall) -> ProviderError:
    reason = getattr(exc, "verify_message", None) or exc
    return TransientError(f"{at.provider}: TLS certificate verification failed at {at.stage}: {reason}; "
                          "check `ca_file` or the server's certificate")


def _tls(exc: Any, at: ImapCall) -> ProviderError:
    return TransientError(f"{at.provider}: TLS failed at {at.stage}: {exc.reason or exc}")


def _refused(exc: Any, at: ImapCall) -> ProviderError:
    return TransientError(f"{at.provider}: IMAP connection refused ({exc.strerror or exc})")


def _transient(exc: BaseException, at: ImapCall) -> ProviderError:
    return TransientError(f"{at.provider}: IMAP {at.stage}: {type(exc).__name__}: {exc}")


def _unreadable(exc: BaseException, at: ImapCall) -> ProviderError:
    # What aioimaplib's parser raises on bytes it cannot read: the server's doing.
    return MalformedResponse(f"{at.provider}: IMAP {at.stage}: unreadable answer ({type(exc).__name__}: {exc})")


AIOIMAPLIB_ERRORS: ExceptionMap[ImapCall] = ExceptionMap("aioimaplib", {
    "CommandTimeout": _timeout,
    "AioImapException": _transient,
    "Error": _transient,
    "Abort": _transient,
    "IncompleteRead": _transient,
}, {
    asyncio.TimeoutError: _timeout,
    ssl.SSLCertVerificationError: _certificate,
    ssl.SSLError: _tls,
    ConnectionRefusedError: _refused,
    ConnectionError: _transient,
    OSError: _transient,
    EOFError: _transient,
    ValueError: _unreadable,
    IndexError: _unreadable,
    UnicodeError: _unreadable,
    # A bug on our side (or in the client library): it must not be counted as the
    # provider's malformed answer. Raised as is, the provider actor reports it as `crashed`.
    AttributeError: RAISE,
    TypeError: RAISE,
    KeyError: RAISE,
    NameError: RAISE,
    AssertionError: RAISE,
    BaseException: _transient,
})


def classify_exception(exc: BaseException, stage: str, provider: str, timeout_s: float) -> ProviderError:
    return AIOIMAPLIB_ERRORS.translate(exc, ImapCall(provider, stage, timeout_s))


# --- one session ---------------------------------------------------------------------
class Session:
    """One connection: each command raced against the deadline and the
    connection's loss, its failures mapped to our kinds. `settings`: the
    adapter's ImapSettings; `transport`: a client factory, None for aioimaplib's."""

    def __init__(self, settings: Any, provider: str, transport: ImapClientFactory | None, deadline: float):
        self.settings = settings
        self.provider = provider
        self.transport = transport
        self.deadline = deadline
        self.client: ImapClient | Any = None
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
            raise classify_exception(exc, stage, self.provider, timeout) from None

    def _dropped(self, stage: str) -> ProviderError:
        if self.bye is not None:
            return classify_status(stage, "BYE", self.bye, self.provider)
        return TransientError(f"{self.provider}: IMAP {stage}: the server closed the connection")

    def _check(self, stage: str, response: Any, mailbox: str | None = None) -> list[Any]:
        result = getattr(response, "result", None)
        lines = getattr(response, "lines", None)
        if not isinstance(result, str) or not isinstance(lines, list):
            raise MalformedResponse(f"{self.provider}: IMAP {stage}: unexpected answer {str(response)[:120]!r}")
        if result != "OK":
            if result not in ("NO", "BAD"):
                result = "BYE" if self.bye is not None else result
                text = self.bye if self.bye is not None else status_text(lines)
            else:
                text = status_text(lines)
            error = classify_status(stage, result, text, self.provider, mailbox)
            if stage == "login" and self.settings.auth_method == "xoauth2" and isinstance(error, AuthError):
                status = challenge_status(lines)
                if status:
                    error = AuthError(f"{error.message} (XOAUTH2 status {status}: the access token is "
                                      "invalid, expired or lacks the https://mail.google.com/ scope)")
            raise error
        return lines

    # --- the protocol steps ---------------------------------------------------------
    async def open(self) -> None:
        s = self.settings
        context = client_context(self.provider, verify_tls=s.verify_tls, ca_file=s.ca_file)
        factory = self.transport or default_transport
        try:
            self.client = factory(s.host, s.port, s.timeout_s, context)
        except BaseException as exc:  # noqa: BLE001
            raise classify_exception(exc, "connect", self.provider, s.timeout_s) from None
        self._watch()
        await self.run("connect", self.client.wait_hello_from_server)
        if self.bye is not None:  # greeted with BYE: the server will not serve us now
            raise classify_status("connect", "BYE", self.bye, self.provider)

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
