"""Shared pieces of the reply_fetching tests: a message corpus, a scripted
fake IMAP client, and small helpers to run adapter calls without Ray."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import pytest

from actors.messages import CallContext

# --- running -------------------------------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def ctx(timeout_s: float = 10.0, dry_run: bool = False) -> CallContext:
    return CallContext(request_id="req-1", method="fetch_replies", timeout_s=timeout_s, dry_run=dry_run)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- messages ------------------------------------------------------------------


def message(*, sender: str = "Bob Lead <bob@lead.example>", to: str = "ann@example.com", subject: str = "Re: Hello",
            text: str | None = "Thanks, sounds good.", html: str | None = None, message_id: str = "<r1@lead.example>",
            in_reply_to: str | None = "<welcome-1@ann.example>", date: str | None = "2026-02-01T09:30:00Z",
            extra_headers: dict[str, str] | None = None) -> bytes:
    """A well-formed reply built with the stdlib (encodes non-ASCII headers itself)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    if date:
        msg["Date"] = format_datetime(at(date))
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    if text is not None and html is not None:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(text or "")
    return bytes(msg)


@dataclass(frozen=True)
class Seeded:
    key: str
    raw: bytes
    seen: bool
    arrived: datetime


def corpus() -> list[Seeded]:
    """The mailbox the server tests and the integration tests seed: replies
    with In-Reply-To, one HTML-only, one with encoded headers, some already
    \\Seen, arriving at known times (oldest first)."""
    t = lambda s: datetime.fromisoformat(s).replace(tzinfo=timezone.utc)  # noqa: E731
    encoded = (
        b"From: =?utf-8?q?Ren=C3=A9e_Lef=C3=A8vre?= <renee@lead.example>\r\n"
        b"To: ann@example.com\r\n"
        b"Subject: =?utf-8?b?UmU6IETDqWrDoCB2dSDigJQg0L/RgNC40LLQtdGC?=\r\n"
        b"Message-ID: <r3@lead.example>\r\n"
        b"In-Reply-To: <welcome-3@ann.example>\r\n"
        b"Date: Sun, 01 Feb 2026 11:00:00 +0100\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Tr=E8s bien, merci.\r\n"
    )
    return [
        Seeded("old-seen", message(message_id="<r0@lead.example>", subject="Re: Old", text="Already handled.",
                                   in_reply_to="<welcome-0@ann.example>", date="2026-01-20T08:00:00Z"),
               True, t("2026-01-20T08:00:05")),
        Seeded("plain", message(), False, t("2026-02-01T09:30:05")),
        Seeded("encoded", encoded, False, t("2026-02-01T10:00:05")),
        Seeded("html-only", message(sender="carol@lead.example", subject="Re: Offer", text=None,
                                    html="<html><body><p>Yes&nbsp;please!</p><p>Call me <b>tomorrow</b>.</p>"
                                         "<script>x()</script></body></html>",
                                    message_id="<r4@lead.example>", in_reply_to="<welcome-4@ann.example>",
                                    date="2026-02-01T15:00:00Z"),
               False, t("2026-02-01T15:00:05")),
        Seeded("recent-seen", message(sender="dan@lead.example", message_id="<r5@lead.example>", subject="Re: Hi",
                                      text="Seen already.", date="2026-02-02T08:00:00Z"),
               True, t("2026-02-02T08:00:05")),
        Seeded("newest", message(sender="erin@lead.example", message_id="<r6@lead.example>", subject="Re: Demo",
                                 text="Next week works.", in_reply_to="<welcome-6@ann.example>",
                                 date="2026-02-03T12:00:00Z"),
               False, t("2026-02-03T12:00:05")),
    ]


# --- a scripted fake IMAP client (aioimaplib's IMAP4 surface) -------------------


def ok(*lines: bytes | bytearray) -> Any:
    from aioimaplib import Response

    return Response("OK", list(lines))


def no(text: bytes) -> Any:
    from aioimaplib import Response

    return Response("NO", [text])


def bad(text: bytes) -> Any:
    from aioimaplib import Response

    return Response("BAD", [text])


def fetch_lines(*messages: tuple[int, str, bytes], date_after_body: bool = False) -> list[Any]:
    """What aioimaplib hands back for UID FETCH (BODY.PEEK[] INTERNALDATE):
    the announcing line, the literal as its own bytearray item, the rest."""
    lines: list[Any] = []
    for seq, (uid, date, raw) in enumerate(messages, start=1):
        if date_after_body:
            lines += [f"{seq} FETCH (UID {uid} BODY[] {{{len(raw)}}}".encode(), bytearray(raw),
                      f' INTERNALDATE "{date}")'.encode()]
        else:
            lines += [f'{seq} FETCH (UID {uid} INTERNALDATE "{date}" BODY[] {{{len(raw)}}}'.encode(),
                      bytearray(raw), b")"]
    lines.append(b"Fetch completed (0.001 + 0.000 secs).")
    return lines


class FakeProtocol:
    """Just enough of aioimaplib's protocol for the adapter's BYE/loss watch."""

    def __init__(self) -> None:
        self.conn_lost_cb: Callable[[Exception | None], None] | None = None
        self.transport = None
        self.pending_sync_command = None

    def data_received(self, data: bytes) -> None:
        pass

    def server_says(self, data: bytes) -> None:
        self.data_received(data)

    def drop(self) -> None:
        if self.conn_lost_cb is not None:
            self.conn_lost_cb(None)


@dataclass
class FakeImap:
    """Answers each command from `script` (name -> Response, exception, or an
    async callable taking the client). Records every command it was given."""

    script: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    state: str = "CONNECTED"
    protocol: FakeProtocol = field(default_factory=FakeProtocol)

    async def _answer(self, name: str, *args: Any) -> Any:
        self.calls.append((name, args))
        answer = self.script.get(name)
        if answer is None:
            return ok(f"{name} completed".encode())
        if isinstance(answer, BaseException) or (isinstance(answer, type) and issubclass(answer, BaseException)):
            raise answer
        if callable(answer):
            return await answer(self)
        return answer

    def get_state(self) -> str:
        return self.state

    async def wait_hello_from_server(self) -> None:
        await self._answer("hello")
        self.state = "NONAUTH"

    async def login(self, user: str, password: str) -> Any:
        response = await self._answer("login", user, password)
        if response.result == "OK":
            self.state = "AUTH"
        return response

    async def xoauth2(self, user: str, token: str) -> Any:
        response = await self._answer("xoauth2", user, token)
        if response.result == "OK":
            self.state = "AUTH"
        return response

    async def select(self, mailbox: str) -> Any:
        return await self._answer("select", mailbox)

    async def uid_search(self, *criteria: str, charset: str | None = "utf-8") -> Any:
        return await self._answer("search", *criteria, charset)

    async def uid(self, command: str, *args: str) -> Any:
        return await self._answer(command.lower(), *args)

    async def noop(self) -> Any:
        return await self._answer("noop")

    async def logout(self) -> Any:
        self.state = "LOGOUT"
        return await self._answer("logout")


class FakeFactory:
    """The adapter's `transport`: builds FakeImap clients and keeps them."""

    def __init__(self, **script: Any):
        self.script = script
        self.clients: list[FakeImap] = []
        self.connects: list[tuple[str, int, float]] = []

    def __call__(self, host: str, port: int, timeout: float, ssl_context: Any) -> FakeImap:
        self.connects.append((host, port, timeout))
        client = FakeImap(dict(self.script))
        self.clients.append(client)
        return client

    @property
    def last(self) -> FakeImap:
        return self.clients[-1]

    def commands(self) -> list[str]:
        return [name for name, _ in self.last.calls]


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- the real Dovecot ---------------------------------------------------------------

IN_CI = os.environ.get("CI", "").lower() == "true"
USER = "ann@example.com"
PASSWORD = "dovecot-test-Pw-31c8"


def dovecot_or_skip() -> None:
    """Skip when Dovecot cannot run here; in CI, fail instead (it must run there)."""
    from actors.sandbox.dovecot import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but the real IMAP server cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def start_dovecot(**options: Any) -> Any:
    from actors.sandbox.dovecot import DovecotError, DovecotServer

    dovecot_or_skip()
    server = DovecotServer(users={USER: PASSWORD}, **options)
    try:
        return server.start()
    except DovecotError as exc:
        server.cleanup()
        if IN_CI:
            pytest.fail(f"Dovecot would not start: {exc}", pytrace=False)
        pytest.skip(f"Dovecot would not start here: {exc}")


def seed(server: Any, user: str = USER, mailbox: str = "INBOX") -> dict[str, Any]:
    """Deliver the corpus; returns it by key."""
    messages = {}
    for item in corpus():
        server.deliver(user, item.raw, seen=item.seen, internal_date=item.arrived, mailbox=mailbox)
        messages[item.key] = item
    return messages
