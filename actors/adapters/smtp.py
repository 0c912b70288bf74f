"""SMTP submission (RFC 6409) with aiosmtplib: `smtp` for any server, `gmail` preset.

    connect ─ EHLO ─ STARTTLS (587) ─ EHLO ─ AUTH ─┬─ MAIL ─ RCPT… ─ DATA ─ payload ─ 250
    connect with TLS (465) ─ EHLO ─────────────────┘        (reused for the next message)

Sessions are kept open and reused (a TLS handshake plus AUTH per message
would triple the latency), at most `max_connections` at once, each dropped
after `idle_s` without use. A reused session the server has meanwhile closed
is noticed at MAIL, before anything was sent, and replaced once.

Where a failure happened decides whether the message may have gone out: only
from the DATA command on can the server hold the message although we saw no
250. aiosmtplib sends DATA and the payload in one call, so we cannot tell a
timeout while waiting for the 354 from one after the payload; both count as
`maybe_delivered` (the safe side: parked, never sent twice by us).

SMTP has no idempotency. The gateway sets the `Message-ID` itself, derived
from the idempotency key (or the request id), so a resend carries the same id
and mail clients can tell it is the same message. The helpers that build the
message and its id are shared by the SendGrid and Mailgun adapters, so the
same request gets the same Message-ID whichever provider sends it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

from pydantic import Field, SecretStr, model_validator

from actors.adapters.base import Adapter, AdapterSettings
from actors.errors import (
    AttemptTimeout,
    AuthError,
    GatewayError,
    ProviderError,
    ProviderRejected,
    RateLimited,
    TransientError,
)
from actors.messages import CallContext
from actors.payloads import Payload, SendEmail

__all__ = [
    "GmailSettings",
    "GmailSmtpAdapter",
    "RESERVED_HEADERS",
    "SmtpAdapter",
    "SmtpSettings",
    "build_message",
    "make_message_id",
    "reply_error",
    "scrub",
    "sender_of",
]

from actors.adapters.email_message import (  # noqa: E402 - re-exported for the other email adapters
    RESERVED_HEADERS,
    build_message,
    make_message_id,
    scrub,
    sender_of,
)

# --- settings ----------------------------------------------------------------

TlsMode = Literal["starttls", "implicit", "none"]

# Gmail (and others) answer `550 5.4.5 Daily user sending quota exceeded`
# when the account's rolling 24-hour quota is used up, and then refuse mail
# for up to 24 h. The reply does not say when the window frees up, so the
# provider is throttled for an hour: long enough that other providers take
# the traffic instead of each request finding out again, short enough to
# notice soon after the oldest messages leave the window.
QUOTA_RETRY_AFTER_S = 3600.0


class SmtpSettings(AdapterSettings):
    host: str
    port: int = Field(587, ge=1, le=65535)
    tls_mode: TlsMode | None = Field(None, description="None: implicit on port 465, else starttls")
    username: str | None = None
    password: SecretStr | None = None
    oauth_token: SecretStr | None = Field(None, description="OAuth 2.0 access token, for XOAUTH2")
    auth_method: Literal["auto", "plain", "login", "xoauth2"] = "auto"
    from_addr: str | None = Field(None, description="sender when the payload gives none")
    verify_tls: bool = True
    ca_file: str | None = Field(None, description="PEM file of CAs to trust (e.g. a test CA)")
    timeout_s: float = Field(15.0, gt=0, description="the most one SMTP command may take")
    local_hostname: str | None = Field(None, description="name sent in EHLO; default: this host's name")
    max_connections: int = Field(4, ge=1, description="SMTP sessions open at once")
    idle_s: float = Field(30.0, ge=0, description="a session unused this long is closed, not reused")
    quota_retry_after_s: float = Field(QUOTA_RETRY_AFTER_S, ge=0, description="throttle after a daily-quota reply")
    allow_cleartext_auth: bool = Field(False, description=(
        "let AUTH (the password or token) cross the network unencrypted with tls_mode: none; "
        "only for a trusted network. Without it such a config is refused (loopback hosts excepted)"))

    @model_validator(mode="after")
    def _check_auth(self) -> "SmtpSettings":
        if self.auth_method == "xoauth2" and self.oauth_token is None:
            raise ValueError("auth_method xoauth2 needs `oauth_token`")
        if self.auth_method in ("plain", "login") and self.password is None:
            raise ValueError(f"auth_method {self.auth_method} needs `password`")
        if (self.password is not None or self.oauth_token is not None) and not self.username:
            raise ValueError("`username` is needed with `password` or `oauth_token`")
        if self.cleartext_auth and not self.allow_cleartext_auth:
            raise ValueError(
                "tls_mode: none with a username would send the password (or token) unencrypted to "
                f"{self.host}; use tls_mode starttls (587) or implicit (465), or set allow_cleartext_auth: true "
                "if this network is trusted")
        return self

    @property
    def cleartext_auth(self) -> bool:
        """AUTH would cross the network unencrypted."""
        from actors.adapters.cleartext import is_loopback

        return self.effective_tls_mode == "none" and bool(self.username) and not is_loopback(self.host)

    @property
    def effective_tls_mode(self) -> TlsMode:
        # STARTTLS is required, not opportunistic, whenever TLS is not
        # implicit: a server that does not offer it fails the attempt rather
        # than receive credentials in the clear. `none` must be asked for.
        if self.tls_mode is not None:
            return self.tls_mode
        return "implicit" if self.port == 465 else "starttls"


# --- errors: one table, one mapper ---------------------------------------------

# SMTP reply code -> error kind. 535 bad credentials, 534 mechanism too weak /
# app password needed (Gmail), 530 authentication required; 454 temporary
# authentication (or TLS) failure; 421 service not available / try later,
# 450 mailbox busy / receiving too fast, 451 local error / try later,
# 452 too many recipients or insufficient storage: all "come back later".
_REPLY_KIND: dict[int, type[ProviderError]] = {
    535: AuthError,
    534: AuthError,
    530: AuthError,
    454: TransientError,
    421: RateLimited,
    450: RateLimited,
    451: RateLimited,
    452: RateLimited,
}


def reply_error(code: int, text: str, provider: str, stage: str,
                quota_retry_after_s: float = QUOTA_RETRY_AFTER_S) -> ProviderError:
    """An SMTP error reply as our error. A reply is an answer: nothing was delivered."""
    text = " ".join(str(text).split())[:300]
    message = f"{provider}: SMTP {code} at {stage}: {text}"
    if stage == "auth" and 500 <= code < 600:
        # A permanent refusal of AUTH (535 bad credentials, but also 538
        # encryption required, 504 mechanism not supported, 534 too weak)
        # says our credentials or how we present them must change: never
        # the payload's fault, always worth the credentials recommendation.
        return AuthError(message, status=code)
    if code == 550 and "5.4.5" in text:  # daily sending quota exceeded
        return RateLimited(message, retry_after_s=quota_retry_after_s, status=code)
    if code == 421 and "4.3.2" in text:  # "service not available": the server is going down, not pacing us
        return TransientError(message, status=code)
    kind = _REPLY_KIND.get(code)
    if kind is not None:
        return kind(message, status=code)
    if 500 <= code < 600:
        return ProviderRejected(message, status=code)
    return TransientError(message, status=code)


def map_exception(exc: BaseException, provider: str, stage: str, settings: SmtpSettings) -> ProviderError:
    """Translate what aiosmtplib (or the network) raised at `stage` into our error."""
    import aiosmtplib

    if isinstance(exc, ProviderError):
        return exc
    after_data = stage == "data"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        first = exc.recipients[0] if exc.recipients else None
        if first is None:
            return ProviderRejected(f"{provider}: every recipient was refused")
        error = reply_error(first.code, first.message, provider, "rcpt", settings.quota_retry_after_s)
        if len(exc.recipients) > 1:
            error.message += f" (and {len(exc.recipients) - 1} more recipient(s) refused)"
            error.args = (error.message,)
        return error
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return reply_error(exc.code, exc.message, provider, stage, settings.quota_retry_after_s)
    if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError):
        return AttemptTimeout(f"{provider}: no connection to {settings.host}:{settings.port} in time")
    cause = (exc.__cause__ or exc) if isinstance(exc, aiosmtplib.SMTPConnectError) else exc
    if isinstance(cause, ssl.SSLCertVerificationError) or isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(cause, "verify_message", None) or cause
        return TransientError(f"{provider}: TLS certificate of {settings.host} not trusted: {detail} "
                              "(check `ca_file`, or the host name)")
    if isinstance(cause, ssl.SSLError):
        return TransientError(f"{provider}: TLS failed at {stage}: {cause}")
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        # Refused, unreachable, reset during the greeting: nothing was sent.
        return TransientError(f"{provider}: cannot connect to {settings.host}:{settings.port}: {cause}")
    if isinstance(exc, (aiosmtplib.SMTPTimeoutError, TimeoutError, asyncio.TimeoutError)):
        where = "after the message data was sent" if after_data else f"at {stage}"
        detail = f" ({exc})" if str(exc) else ""
        return AttemptTimeout(f"{provider}: no SMTP reply in time {where}{detail}", maybe_delivered=after_data)
    if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError)):
        where = "after the message data was sent" if after_data else f"at {stage}"
        return TransientError(f"{provider}: connection lost {where}: {exc}", maybe_delivered=after_data)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return ProviderRejected(f"{provider}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException):
        text = str(exc)
        if stage == "auth" or "AUTH" in text:
            return AuthError(f"{provider}: {text}")
        return TransientError(f"{provider}: {text} (at {stage})", maybe_delivered=after_data)
    if isinstance(exc, ValueError):  # aiosmtplib refuses an address it cannot send safely
        return ProviderRejected(f"{provider}: {exc}")
    raise exc


# --- sessions --------------------------------------------------------------------


@dataclass
class _Progress:
    """How far one attempt got; decides whether a failure may have delivered."""

    stage: str = "connect"


class _Deadline:
    """The attempt's time, ending a little before the provider actor's own
    timeout would cancel us: our timeout knows the stage, a cancel does not."""

    def __init__(self, timeout_s: float, command_timeout_s: float):
        margin = min(0.25, timeout_s * 0.1)
        self._ends = time.monotonic() + timeout_s - margin
        self._command = command_timeout_s

    def left(self, stage: str) -> float:
        left = self._ends - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"attempt time used up before {stage}")
        return min(self._command, left)


@dataclass
class _Pool:
    """At most `size` sessions in use; idle ones kept for reuse while fresh."""

    size: int
    idle_s: float
    idle: list[tuple[Any, float]] = field(default_factory=list)
    slots: asyncio.Semaphore | None = None

    async def take(self, deadline: _Deadline) -> Any | None:
        """Wait for a slot (held until `give_back` or `discard`); return a fresh
        idle session, or None: the caller opens one."""
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.size)
        await asyncio.wait_for(self.slots.acquire(), deadline.left("a free SMTP session"))
        now = time.monotonic()
        while self.idle:
            client, since = self.idle.pop()
            if now - since <= self.idle_s and client.is_connected:
                return client
            client.close()
        return None

    def give_back(self, client: Any) -> None:
        self.idle.append((client, time.monotonic()))
        for old, _ in self.idle[:-self.size]:
            old.close()
        del self.idle[:-self.size]
        self._free()

    def discard(self, client: Any | None) -> None:
        if client is not None:
            client.close()
        self._free()

    def drop_idle(self) -> None:
        idle, self.idle = self.idle, []
        for client, _ in idle:
            client.close()

    def _free(self) -> None:
        assert self.slots is not None
        self.slots.release()

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for client, _ in idle:
            try:
                await asyncio.wait_for(client.quit(), 2.0)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            client.close()


class _Stale(GatewayError):
    """A reused session turned out closed before anything was sent."""


# --- the adapter ---------------------------------------------------------------------


class SmtpAdapter(Adapter):
    name: ClassVar[str] = "smtp"
    Settings: ClassVar[type[AdapterSettings]] = SmtpSettings
    capabilities: ClassVar[frozenset[str]] = frozenset({"email_sending"})
    auth_settings: ClassVar[tuple[str, ...]] = ("username", "password", "oauth_token", "auth_method")
    has_probe: ClassVar[bool] = True
    resends_deduplicated: ClassVar[frozenset[str]] = frozenset()  # SMTP has no idempotency

    settings: SmtpSettings

    def __init__(self, settings: SmtpSettings, *, capability: str, provider: str,
                 transport: Callable[..., Any] | None = None):
        """`transport`: a factory taking aiosmtplib.SMTP's keyword arguments and
        returning a client with its interface (unit tests pass a fake)."""
        super().__init__(settings, capability=capability, provider=provider, transport=transport)
        self._pool = _Pool(settings.max_connections, settings.idle_s)
        self._tls_context: ssl.SSLContext | None = None
        self._ehlo_name = settings.local_hostname or socket.gethostname() or "localhost"

    @classmethod
    def cleartext_settings(cls, settings: AdapterSettings) -> list[str]:
        assert isinstance(settings, SmtpSettings)
        return ["tls_mode"] if settings.cleartext_auth else []

    # --- capability methods ----------------------------------------------------------
    async def send_email(self, payload: SendEmail, ctx: CallContext) -> dict[str, Any]:
        s = self.settings
        sender = sender_of(payload, s.from_addr or self._username_as_sender(), self.provider)
        msg = build_message(payload, ctx, sender, self.provider)
        data = msg.as_bytes()
        recipients = list(payload.to)
        options = ["SMTPUTF8"] if msg.policy.utf8 else []
        deadline = _Deadline(ctx.timeout_s, s.timeout_s)
        for _ in range(2):
            progress = _Progress(stage="waiting for a session")
            try:
                client = await self._pool.take(deadline)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise scrub(map_exception(exc, self.provider, progress.stage, s), s) from None
            reused = client is not None
            try:
                if client is None:
                    client = await self._open(deadline, progress)
                accepted, refused = await self._transaction(client, sender, recipients, data, options,
                                                            deadline, progress, reused)
            except _Stale:
                # The server closed the idle session (so likely the others too).
                self._pool.discard(client)
                self._pool.drop_idle()
                continue
            except BaseException as exc:
                self._pool.discard(client)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise scrub(map_exception(exc, self.provider, progress.stage, s), s) from None
            self._pool.give_back(client)
            # Plain str: the header object is a str subclass msgspec cannot encode.
            message_id = str(msg["Message-ID"])
            return {"message_id": message_id, "rfc_message_id": message_id, "accepted": accepted, "refused": refused}
        raise TransientError(f"{self.provider}: the server closed two sessions in a row before MAIL")

    def _auth_method_named(self) -> str:
        """The AUTH mechanism from the settings alone ("auto" may still pick
        between PLAIN and LOGIN once the server lists what it offers)."""
        s = self.settings
        if s.auth_method == "auto":
            return "xoauth2" if s.oauth_token is not None else "auto (plain or login)"
        return s.auth_method

    def _username_as_sender(self) -> str | None:
        username = self.settings.username
        return username if username and "@" in username else None

    async def _transaction(self, client: Any, sender: str, recipients: list[str], data: bytes,
                           options: list[str], deadline: _Deadline, progress: _Progress,
                           reused: bool) -> tuple[list[str], dict[str, str]]:
        import aiosmtplib

        progress.stage = "mail"
        try:
            await client.mail(sender, options=options, encoding="utf-8" if options else "ascii",
                              timeout=deadline.left("MAIL"))
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            if reused:
                raise _Stale() from exc
            raise
        progress.stage = "rcpt"
        accepted: list[str] = []
        refused: dict[str, str] = {}
        failures: list[Any] = []
        for address in recipients:
            try:
                await client.rcpt(address, encoding="utf-8" if options else "ascii", timeout=deadline.left("RCPT"))
                accepted.append(address)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused[address] = f"{exc.code} {' '.join(exc.message.split())}"
                failures.append(exc)
        if not accepted:
            raise aiosmtplib.SMTPRecipientsRefused(failures)
        timeout = deadline.left("DATA")  # out of time here: nothing was sent yet
        progress.stage = "data"
        await client.data(data, timeout=timeout)
        return accepted, refused

    # --- sessions ------------------------------------------------------------------------
    def _client(self, timeout_s: float) -> Any:
        s = self.settings
        mode = s.effective_tls_mode
        kwargs = dict(hostname=s.host, port=s.port, use_tls=mode == "implicit", start_tls=False,
                      tls_context=self._tls() if mode != "none" else None,
                      local_hostname=self._ehlo_name, timeout=timeout_s)
        if self.transport is not None:
            return self.transport(**kwargs)
        import aiosmtplib

        return aiosmtplib.SMTP(**kwargs)

    def _tls(self) -> ssl.SSLContext:
        if self._tls_context is None:
            s = self.settings
            try:
                context = ssl.create_default_context(cafile=s.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise TransientError(f"{self.provider}: cannot load `ca_file` {s.ca_file!r}: {exc}") from None
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if not s.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls_context = context
        return self._tls_context

    async def _open(self, deadline: _Deadline, progress: _Progress) -> Any:
        """Connect, EHLO, TLS, AUTH: a session ready for MAIL."""
        progress.stage = "connect"
        client = self._client(deadline.left("connect"))
        try:
            await client.connect(timeout=deadline.left("connect"))
            await client.ehlo(timeout=deadline.left("EHLO"))
            if self.settings.effective_tls_mode == "starttls":
                progress.stage = "starttls"
                if not client.supports_extension("starttls"):
                    raise TransientError(
                        f"{self.provider}: {self.settings.host}:{self.settings.port} does not offer STARTTLS; "
                        "use port 465 (tls_mode: implicit), or tls_mode: none only on a trusted network")
                await client.starttls(timeout=deadline.left("STARTTLS"))
                await client.ehlo(timeout=deadline.left("EHLO"))
            progress.stage = "auth"
            await self._authenticate(client, deadline)
        except BaseException:
            client.close()
            raise
        return client

    async def _authenticate(self, client: Any, deadline: _Deadline) -> None:
        s = self.settings
        if not s.username:
            return  # a relay that trusts this network
        offered = [m.lower() for m in client.server_auth_methods]
        method = s.auth_method
        if method == "auto":
            if s.oauth_token is not None:
                method = "xoauth2"
            else:
                method = next((m for m in ("plain", "login") if m in offered), "plain")
        if method not in offered:
            listed = ", ".join(offered) or "none"
            hint = " before TLS" if s.effective_tls_mode == "none" else ""
            raise AuthError(f"{self.provider}: the server does not offer AUTH {method.upper()}{hint} "
                            f"(it offers: {listed}); check `auth_method`")
        timeout = deadline.left("AUTH")
        if method == "xoauth2":
            assert s.oauth_token is not None
            # The server answers a bad token with a 334 challenge holding a
            # base64 JSON error; aiosmtplib replies with an empty line and
            # raises on the final 535 (Google's XOAUTH2 protocol page).
            await client.auth_xoauth2(s.username, s.oauth_token.get_secret_value(), timeout=timeout)
        else:
            assert s.password is not None
            auth = client.auth_plain if method == "plain" else client.auth_login
            await auth(s.username, s.password.get_secret_value(), timeout=timeout)

    # --- the rest of the interface --------------------------------------------------
    async def probe(self) -> None:
        """Connect, EHLO, TLS, AUTH, NOOP, QUIT on a session of its own: nothing is sent."""
        progress = _Progress()
        deadline = _Deadline(max(self.settings.timeout_s, 1.0), self.settings.timeout_s)
        client = None
        try:
            client = await self._open(deadline, progress)
            progress.stage = "noop"
            await client.noop(timeout=deadline.left("NOOP"))
            progress.stage = "quit"
            await client.quit(timeout=deadline.left("QUIT"))
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise scrub(map_exception(exc, self.provider, progress.stage, self.settings), self.settings) from None
        finally:
            if client is not None:
                client.close()

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        assert isinstance(payload, SendEmail)
        s = self.settings
        sender = sender_of(payload, s.from_addr or self._username_as_sender(), self.provider)
        msg = build_message(payload, ctx, sender, self.provider)
        auth = {"method": self._auth_method_named(), "username": s.username} if s.username else None
        return self.would_send(method, {
            "server": {"host": s.host, "port": s.port, "tls_mode": s.effective_tls_mode},
            "auth": auth,
            "envelope": {"mail_from": sender, "rcpt_to": list(payload.to)},
            "message": msg.as_string(),
        }, message_id=str(msg["Message-ID"]))

    async def close(self) -> None:
        await self._pool.close()


# --- Gmail -------------------------------------------------------------------------------

# Gmail's SMTP limits (support.google.com/a/answer/166852; 2nd for consumer):
#   Workspace: 2,000 messages a day (500 on trial accounts), 10,000 recipients
#   a day, 100 recipients per message over SMTP; consumer Gmail: 500 a day.
#   The window is a rolling 24 h; going over blocks sending for up to 24 h
#   (`550 5.4.5 Daily user sending quota exceeded`, mapped to rate_limited
#   with `quota_retry_after_s`). Sending too fast gives 421 4.7.0 / 450 4.2.1.
# Plain account passwords stopped working on 2025-05-01: use an app password
# (accounts with 2-step verification) or an OAuth 2.0 token with the scope
# https://mail.google.com/ (sent as XOAUTH2). Gmail rewrites From to the
# account's address unless it is a configured "send mail as" alias.


class GmailSettings(SmtpSettings):
    host: str = "smtp.gmail.com"
    port: int = Field(587, ge=1, le=65535)
    username: str = Field(description="the full Gmail or Workspace address")  # type: ignore[assignment]

    @model_validator(mode="after")
    def _check_gmail(self) -> "GmailSettings":
        if "@" not in self.username:
            raise ValueError("Gmail's username is the full address, e.g. bot@example.com")
        if self.password is None and self.oauth_token is None:
            raise ValueError("give an app password (`password`) or an OAuth token (`oauth_token`)")
        return self


class GmailSmtpAdapter(SmtpAdapter):
    name: ClassVar[str] = "gmail"
    Settings: ClassVar[type[AdapterSettings]] = GmailSettings
