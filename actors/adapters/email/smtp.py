"""SMTP submission (RFC 6409) with aiosmtplib: `smtp` for any server, `gmail` preset.

    connect ─ EHLO ─ STARTTLS (587) ─ EHLO ─ AUTH ─┬─ MAIL ─ RCPT… ─ DATA ─ payload ─ 250
    connect with TLS (465) ─ EHLO ─────────────────┘        (reused for the next message)

Sessions are kept open and reused (smtp_session.py). Where a failure
happened decides whether the message may have gone out: replies and
aiosmtplib's exceptions become our kinds by the tables of smtp_errors.py.

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
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, model_validator

from actors.adapters.base import Adapter, AdapterSettings
from actors.adapters.email.email_message import RESERVED_HEADERS, build_message, make_message_id, sender_of
from actors.adapters.email.smtp_errors import QUOTA_RETRY_AFTER_S, map_exception, reply_error
from actors.adapters.email.smtp_session import Deadline, Progress, SessionPool, SmtpClient, SmtpClientFactory, StaleSession
from actors.adapters.tls import client_context
from actors.errors import AuthError, TransientError
from actors.messages import CallContext
from actors.payloads import Payload, SendEmail

__all__ = [
    "QUOTA_RETRY_AFTER_S",
    "RESERVED_HEADERS",
    "GmailSettings",
    "GmailSmtpAdapter",
    "SmtpAdapter",
    "SmtpSettings",
    "build_message",
    "make_message_id",
    "map_exception",
    "reply_error",
    "sender_of",
]

# --- settings ----------------------------------------------------------------

TlsMode = Literal["starttls", "implicit", "none"]


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
                 transport: SmtpClientFactory | None = None, clock: Callable[[], float] = time.monotonic):
        """`transport`: a factory taking aiosmtplib.SMTP's keyword arguments and
        returning a client with its interface (unit tests pass a fake); `clock`:
        the monotonic time the attempt's deadline and idle sessions are read on."""
        super().__init__(settings, capability=capability, provider=provider, transport=transport)
        self._clock = clock
        self._pool = SessionPool(settings.max_connections, settings.idle_s, clock)
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
        deadline = Deadline(ctx.timeout_s, s.timeout_s, self._clock)
        for _ in range(2):
            progress = Progress(stage="waiting for a session")
            try:
                client = await self._pool.take(deadline)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise map_exception(exc, self.provider, progress.stage, s) from None
            reused = client is not None
            try:
                if client is None:
                    client = await self._open(deadline, progress)
                accepted, refused = await self._transaction(client, sender, recipients, data, options,
                                                            deadline, progress, reused)
            except StaleSession:
                # The server closed the idle session (so likely the others too).
                self._pool.discard(client)
                self._pool.drop_idle()
                continue
            except BaseException as exc:
                self._pool.discard(client)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise map_exception(exc, self.provider, progress.stage, s) from None
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
                           options: list[str], deadline: Deadline, progress: Progress,
                           reused: bool) -> tuple[list[str], dict[str, str]]:
        import aiosmtplib

        progress.stage = "mail"
        try:
            await client.mail(sender, options=options, encoding="utf-8" if options else "ascii",
                              timeout=deadline.left("MAIL"))
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            if reused:
                raise StaleSession() from exc
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
    def _client(self, timeout_s: float) -> SmtpClient:
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
            self._tls_context = client_context(self.provider, verify_tls=s.verify_tls, ca_file=s.ca_file)
        return self._tls_context

    async def _open(self, deadline: Deadline, progress: Progress) -> Any:
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

    async def _authenticate(self, client: Any, deadline: Deadline) -> None:
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
        progress = Progress()
        deadline = Deadline(max(self.settings.timeout_s, 1.0), self.settings.timeout_s, self._clock)
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
            raise map_exception(exc, self.provider, progress.stage, self.settings) from None
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
