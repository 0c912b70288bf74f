"""A real SMTP submission server on loopback (aiosmtpd), for tests and the demo.

It speaks what a submission server such as smtp.gmail.com speaks:

    port      STARTTLS required before AUTH and MAIL (as on 587)
    tls_port  TLS from the first byte (as on 465)
    AUTH      PLAIN, LOGIN (334 `Username:` / `Password:` prompts), XOAUTH2
              (RFC 4954; Google's XOAUTH2 protocol: a bad token gets a 334
              challenge holding base64 JSON, then 535 after the client's
              empty reply)
    replies   235 2.7.0, 535 5.7.8, 530 5.7.0, 250 2.0.0 OK <queue id>

The certificate comes from a throwaway CA (trustme); `ca_file` is the CA's
PEM, for the adapter's `ca_file` setting. Every accepted message is kept in
`received` (envelope and parsed message). Fault knobs, set with
`set_faults(...)` or on `faults` directly:

    down             greeting `421 4.3.2 Service not available`, then close
    reject_auth      every AUTH gets `535 5.7.8`
    throttle_for_s   MAIL gets `throttle_code` (451 or 452, or 421) until then
    quota_exceeded   MAIL gets `550 5.4.5 Daily user sending quota exceeded`
    failure_rate     this share of MAIL commands gets `451 4.3.0`
    latency_ms       the reply to the message data comes this much later
    drop_after_data  keep the message, then close without replying

    >>> smtp = SmtpStandIn(users={"bot@example.com": "app-password"}).start()
    >>> smtp.adapter_settings()   # host, port, username, password, ca_file
    >>> smtp.stop()
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email
import email.policy
import json
import logging
import random
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["ReceivedMail", "SmtpFaults", "SmtpStandIn"]


@dataclass
class SmtpFaults:
    down: bool = False
    reject_auth: bool = False
    throttle_until: float = 0.0      # epoch seconds
    throttle_code: int = 451
    quota_exceeded: bool = False
    failure_rate: float = 0.0
    latency_ms: float = 0.0
    drop_after_data: bool = False

    def update(self, changes: dict[str, Any]) -> None:
        changes = dict(changes)
        if "throttle_for_s" in changes:
            self.throttle_until = time.time() + float(changes.pop("throttle_for_s"))
        for key, value in changes.items():
            if not hasattr(self, key):
                raise KeyError(f"unknown fault knob {key!r}; known: throttle_for_s, {', '.join(asdict(self))}")
            setattr(self, key, value)


_THROTTLE_TEXT = {
    421: "421 4.7.0 Try again later, closing connection.",
    450: "450 4.2.1 The user you are trying to contact is receiving mail too quickly.",
    451: "451 4.3.0 Mail server temporarily rejected message.",
    452: "452 4.5.3 Your message has too many recipients.",
}


@dataclass
class ReceivedMail:
    at: float
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


class _Handler:
    """aiosmtpd hooks: envelope, data, XOAUTH2."""

    def __init__(self, stand_in: "SmtpStandIn"):
        self.stand_in = stand_in

    async def handle_MAIL(self, server: "_Server", session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        f = self.stand_in.faults
        if f.down:  # a server going down also ends the sessions it had open
            await server.push("421 4.3.2 Service not available, closing transmission channel")
            server.close_soon()
            await asyncio.sleep(3600)  # cancelled when the connection goes
        if f.throttle_until > time.time():
            reply = _THROTTLE_TEXT.get(f.throttle_code, f"{f.throttle_code} 4.7.0 Try again later")
            if f.throttle_code == 421:  # "closing connection": reply, then hang up
                await server.push(reply)
                server.close_soon()
                await asyncio.sleep(3600)  # cancelled when the connection goes
            return reply
        if f.quota_exceeded:
            return "550 5.4.5 Daily user sending quota exceeded."
        if f.failure_rate and self.stand_in.random.random() < f.failure_rate:
            return "451 4.3.0 injected failure"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: "_Server", session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.lower() in self.stand_in.refuse_recipients:
            return "550 5.1.1 The email account that you tried to reach does not exist."
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: "_Server", session: Session, envelope: Envelope) -> str:
        f = self.stand_in.faults
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode()
        auth = session.auth_data
        login = auth.login.decode(errors="replace") if isinstance(auth, LoginPassword) else auth
        self.stand_in.received.append(ReceivedMail(
            at=time.time(), mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos), data=data,
            tls=server.implicit_tls or session.ssl is not None, login=login))
        if f.drop_after_data:
            server.close_soon()
            await asyncio.sleep(3600)  # cancelled when the connection goes
        if f.latency_ms:
            await asyncio.sleep(f.latency_ms / 1000)
        return f"250 2.0.0 OK {uuid.uuid4().hex[:12]} - sandbox"

    async def auth_XOAUTH2(self, server: "_Server", args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await server.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        fields = dict(part.split("=", 1) for part in blob.decode(errors="replace").split("\x01") if "=" in part)
        user, bearer = fields.get("user", ""), fields.get("auth", "")
        token = bearer[len("Bearer "):] if bearer.startswith("Bearer ") else None
        if not self.stand_in.faults.reject_auth and token and self.stand_in.tokens.get(user) == token:
            return AuthResult(success=True, auth_data=user)
        error = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
        await server.challenge_auth(json.dumps(error))  # the client answers with an empty line
        return AuthResult(success=False, handled=False,
                          message="535 5.7.8 Username and Password not accepted.")


class _Server(SMTP):
    # The prompts real servers send (RFC 4954 examples, Gmail), base64 on the wire.
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, stand_in: "SmtpStandIn", implicit_tls: bool, **kwargs: Any):
        with warnings.catch_warnings():
            # "Requiring AUTH while not requiring TLS": the implicit-TLS
            # listener is encrypted from the first byte, which aiosmtpd cannot see.
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(_Handler(stand_in), **kwargs)
        self.stand_in = stand_in
        self.implicit_tls = implicit_tls

    async def _handle_client(self) -> None:
        if self.stand_in.faults.down:
            await self.push("421 4.3.2 Service not available, closing transmission channel")
            self.close_soon()
            return
        await super()._handle_client()

    def close_soon(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _authenticator(stand_in: "SmtpStandIn"):
    def check(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if stand_in.faults.reject_auth or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = data.login.decode(errors="replace")
        ok = stand_in.users.get(user) == data.password.decode(errors="replace")
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    return check


@dataclass
class SmtpStandIn:
    """Start with `start()`, stop with `stop()`; runs in a thread with its own loop."""

    name: ClassVar[str] = "smtp"

    users: dict[str, str] = field(default_factory=lambda: {"bot@example.com": "app-password"})
    tokens: dict[str, str] = field(default_factory=dict)        # user -> OAuth access token
    auth_required: bool = True
    require_starttls: bool = True
    refuse_recipients: set[str] = field(default_factory=set)     # addresses that get 550 5.1.1
    hostname: str = "smtp.sandbox.test"
    seed: int = 0

    def __post_init__(self) -> None:
        self.faults = SmtpFaults()
        self.received: list[ReceivedMail] = []
        self.random = random.Random(self.seed)
        self.host = "127.0.0.1"
        self.port = 0
        self.tls_port = 0
        self.ca_file = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # --- for tests and the demo ------------------------------------------------
    def set_faults(self, **changes: Any) -> dict[str, Any]:
        self.faults.update(changes)
        return asdict(self.faults)

    def reset(self) -> None:
        self.faults = SmtpFaults()
        self.received.clear()

    def adapter_settings(self, implicit_tls: bool = False, **overrides: Any) -> dict[str, Any]:
        """Settings for the `smtp` adapter that reach this server (first user's credentials)."""
        user, password = next(iter(self.users.items()))
        settings = {"host": self.host, "port": self.tls_port if implicit_tls else self.port,
                    "tls_mode": "implicit" if implicit_tls else "starttls", "ca_file": self.ca_file,
                    "username": user, "password": password, "timeout_s": 5}
        settings.update(overrides)
        return settings

    # --- lifecycle ------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0, tls_port: int = 0) -> "SmtpStandIn":
        import trustme  # only needed here; tests and the demo have it

        # aiosmtpd logs every session, a deprecation on each AUTH and a traceback
        # for each client that drops a TLS handshake (as tests do on purpose).
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)

        self.host = host
        self._tmp = tempfile.TemporaryDirectory(prefix="aicmo-smtp-")
        ca = trustme.CA()
        cert = ca.issue_cert(host, "localhost")
        self.ca_file = str(Path(self._tmp.name) / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        import ssl

        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server_tls)

        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._listen(port, tls_port, server_tls))
            except BaseException as exc:  # reported to the starting thread
                error.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="sandbox-smtp", daemon=True)
        self._thread.start()
        ready.wait(30)
        if error:
            raise RuntimeError(f"SMTP stand-in failed to start: {error[0]}") from error[0]
        return self

    async def _listen(self, port: int, tls_port: int, server_tls: Any) -> None:
        loop = asyncio.get_running_loop()
        common = dict(hostname=self.hostname, auth_required=self.auth_required, authenticator=_authenticator(self),
                      enable_SMTPUTF8=True, loop=loop)
        starttls = await loop.create_server(
            lambda: _Server(self, False, tls_context=server_tls, require_starttls=self.require_starttls,
                            auth_require_tls=True, **common),
            self.host, port)
        # Implicit TLS: the session is encrypted from the start, so AUTH needs no STARTTLS.
        implicit = await loop.create_server(
            lambda: _Server(self, True, auth_require_tls=False, **common),
            self.host, tls_port, ssl=server_tls)
        self._servers = [starttls, implicit]
        self.port = starttls.sockets[0].getsockname()[1]
        self.tls_port = implicit.sockets[0].getsockname()[1]

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            for server in self._servers:
                server.close()
            for server in self._servers:
                try:
                    await asyncio.wait_for(server.wait_closed(), 2)
                except asyncio.TimeoutError:
                    pass

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self._loop = None
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def __enter__(self) -> "SmtpStandIn":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
