"""A scripted stand-in for aiosmtplib.SMTP, for SMTP unit tests without a network.

`FakeServer.factory` is what the adapter's `transport=` takes. Every command a
client runs is logged as (client number, command, args); `fail(command, exc)`
makes the next such command raise `exc` (or run it, if it is a coroutine
function, e.g. to sleep).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


class FakeServer:
    def __init__(self, auth_methods: tuple[str, ...] = ("plain", "login"), starttls: bool = True):
        self.auth_methods = auth_methods
        self.starttls = starttls
        self.log: list[tuple[int, str, tuple[Any, ...]]] = []
        self.script: dict[str, list[Any]] = defaultdict(list)
        self.clients: list[FakeClient] = []

    def fail(self, command: str, outcome: Any) -> None:
        self.script[command].append(outcome)

    def factory(self, **kwargs: Any) -> "FakeClient":
        client = FakeClient(self, len(self.clients), kwargs)
        self.clients.append(client)
        return client

    def commands(self) -> list[str]:
        return [command for _, command, _ in self.log]

    def args(self, command: str) -> list[tuple[Any, ...]]:
        return [args for _, c, args in self.log if c == command]


class FakeClient:
    def __init__(self, server: FakeServer, number: int, kwargs: dict[str, Any]):
        self.server = server
        self.number = number
        self.kwargs = kwargs
        self.is_connected = False
        self.tls = bool(kwargs.get("use_tls"))
        self.server_auth_methods: list[str] = []

    async def _run(self, command: str, *args: Any) -> None:
        self.server.log.append((self.number, command, args))
        if self.server.script[command]:
            outcome = self.server.script[command].pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            if callable(outcome):
                await outcome()

    async def connect(self, timeout: float | None = None) -> None:
        await self._run("connect")
        self.is_connected = True

    async def ehlo(self, timeout: float | None = None) -> None:
        await self._run("ehlo")
        secure = self.tls or not self.server.starttls
        self.server_auth_methods = list(self.server.auth_methods) if secure else []

    def supports_extension(self, name: str) -> bool:
        return name == "starttls" and self.server.starttls and not self.tls

    async def starttls(self, timeout: float | None = None) -> None:
        await self._run("starttls")
        self.tls = True
        self.server_auth_methods = []

    async def auth_plain(self, username: str, password: str, timeout: float | None = None) -> None:
        await self._run("auth_plain", username, password)

    async def auth_login(self, username: str, password: str, timeout: float | None = None) -> None:
        await self._run("auth_login", username, password)

    async def auth_xoauth2(self, username: str, token: str, timeout: float | None = None) -> None:
        await self._run("auth_xoauth2", username, token)

    async def mail(self, sender: str, options: Any = None, encoding: str = "ascii", timeout: float | None = None) -> None:
        await self._run("mail", sender)

    async def rcpt(self, address: str, encoding: str = "ascii", timeout: float | None = None) -> None:
        await self._run("rcpt", address)

    async def data(self, message: bytes, timeout: float | None = None) -> None:
        await self._run("data", message)

    async def noop(self, timeout: float | None = None) -> None:
        await self._run("noop")

    async def quit(self, timeout: float | None = None) -> None:
        await self._run("quit")
        self.is_connected = False

    def close(self) -> None:
        self.server.log.append((self.number, "close", ()))
        self.is_connected = False
