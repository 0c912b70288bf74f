"""SMTP sessions: what an attempt's time is (`Deadline`), how far it got
(`Progress`), and the sessions kept open for reuse (`SessionPool`): a TLS
handshake plus AUTH per message would triple the latency, so sessions are
reused, at most `max_connections` at once, each dropped after `idle_s`
without use. A reused session the server has meanwhile closed is noticed at
MAIL, before anything was sent (`StaleSession`), and replaced once.

`SmtpClient` is the transport seam: aiosmtplib.SMTP's interface, as the
adapter uses it; unit tests pass a factory of fakes. The monotonic clock
deadlines and idle times are read on is passed in too (`clock`), so a test
of "out of time before DATA" does not depend on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from actors.errors import GatewayError

__all__ = ["Deadline", "Progress", "SessionPool", "SmtpClient", "SmtpClientFactory", "StaleSession"]


class SmtpClient(Protocol):
    """What the adapter uses of aiosmtplib.SMTP."""

    is_connected: bool
    server_auth_methods: list[str]

    async def connect(self, *, timeout: float | None = ...) -> Any: ...
    async def ehlo(self, *, timeout: float | None = ...) -> Any: ...
    async def starttls(self, *, timeout: float | None = ...) -> Any: ...
    def supports_extension(self, extension: str) -> bool: ...
    async def auth_plain(self, username: str, password: str, *, timeout: float | None = ...) -> Any: ...
    async def auth_login(self, username: str, password: str, *, timeout: float | None = ...) -> Any: ...
    async def auth_xoauth2(self, username: str, token: str, *, timeout: float | None = ...) -> Any: ...
    async def mail(self, sender: str, *, options: Any = ..., encoding: str = ..., timeout: float | None = ...) -> Any: ...
    async def rcpt(self, recipient: str, *, encoding: str = ..., timeout: float | None = ...) -> Any: ...
    async def data(self, message: bytes, *, timeout: float | None = ...) -> Any: ...
    async def noop(self, *, timeout: float | None = ...) -> Any: ...
    async def quit(self, *, timeout: float | None = ...) -> Any: ...
    def close(self) -> None: ...


# Takes aiosmtplib.SMTP's keyword arguments (hostname, port, use_tls, start_tls,
# tls_context, local_hostname, timeout) and returns a client.
SmtpClientFactory = Callable[..., SmtpClient]


@dataclass
class Progress:
    """How far one attempt got; decides whether a failure may have delivered."""

    stage: str = "connect"


class Deadline:
    """The attempt's time, ending a little before the provider actor's own
    timeout would cancel us: our timeout knows the stage, a cancel does not."""

    def __init__(self, timeout_s: float, command_timeout_s: float, clock: Callable[[], float] = time.monotonic):
        margin = min(0.25, timeout_s * 0.1)
        self._clock = clock
        self._ends = clock() + timeout_s - margin
        self._command = command_timeout_s

    def left(self, stage: str) -> float:
        left = self._ends - self._clock()
        if left <= 0:
            raise TimeoutError(f"attempt time used up before {stage}")
        return min(self._command, left)


@dataclass
class SessionPool:
    """At most `size` sessions in use; idle ones kept for reuse while fresh."""

    size: int
    idle_s: float
    clock: Callable[[], float] = time.monotonic
    idle: list[tuple[Any, float]] = field(default_factory=list)
    slots: asyncio.Semaphore | None = None

    async def take(self, deadline: Deadline) -> Any | None:
        """Wait for a slot (held until `give_back` or `discard`); return a fresh
        idle session, or None: the caller opens one."""
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.size)
        await asyncio.wait_for(self.slots.acquire(), deadline.left("a free SMTP session"))
        now = self.clock()
        while self.idle:
            client, since = self.idle.pop()
            if now - since <= self.idle_s and client.is_connected:
                return client
            client.close()
        return None

    def give_back(self, client: Any) -> None:
        self.idle.append((client, self.clock()))
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


class StaleSession(GatewayError):
    """A reused session turned out closed before anything was sent."""
