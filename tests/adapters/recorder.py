"""Helpers for the crm_sync / lead_enrichment / email_verification adapter tests:
a recording httpx transport, call contexts, and a fake clock whose sleep
advances it (no test sleeps on the real clock)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from actors.messages import CallContext

SECRET = "sk-test-SECRET-9f8e7d"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def ctx(method: str, *, timeout_s: float = 10.0, idempotency_key: str | None = None, dry_run: bool = False) -> CallContext:
    return CallContext(request_id="req-1", method=method, idempotency_key=idempotency_key, dry_run=dry_run,
                       timeout_s=timeout_s)


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None, text: str | None = None
          ) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


class Recorder:
    """An httpx.MockTransport that answers from a function (or a list of
    answers, in turn) and keeps every request it saw."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response] | list[Any] | httpx.Response):
        self.requests: list[httpx.Request] = []
        self._answer = answer
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self._answer
        if isinstance(answer, list):
            answer = answer[min(len(self.requests), len(answer)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content or b"null")


def make(cls: type, transport: Any = None, capability: str | None = None, **settings: Any) -> Any:
    capability = capability or sorted(cls.capabilities)[0]
    return cls(cls.Settings.model_validate(settings), capability=capability, provider=cls.name, transport=transport)


class FakeClock:
    """monotonic() and an async sleep that advances it."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
