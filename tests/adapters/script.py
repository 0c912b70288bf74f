"""Helpers for the social_posting and webhook_dispatch adapter tests: a scripted
HTTP transport (no network), call contexts, building adapters, resetting stand-ins."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from actors.messages import CallContext


def ctx(method: str = "publish_post", **kw: Any) -> CallContext:
    return CallContext(request_id=kw.pop("request_id", "req-1"), method=method, **{"timeout_s": 5.0, **kw})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Script:
    """An httpx MockTransport that records each request and answers from a list
    (the last answer repeats). An answer is an httpx.Response, an exception to
    raise, or a callable taking the request."""

    def __init__(self, *answers: Any):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None, text: str | None = None,
           content_type: str | None = None) -> httpx.Response:
    headers = dict(headers or {})
    if text is not None:
        return httpx.Response(status, text=text, headers=headers)
    if body is None:
        return httpx.Response(status, headers=headers)
    if content_type:
        headers["content-type"] = content_type
        return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def build(adapter_cls: type, transport: Any = None, provider: str | None = None, **settings: Any) -> Any:
    capability = next(iter(adapter_cls.capabilities))
    return adapter_cls(adapter_cls.Settings.model_validate(settings), capability=capability,
                       provider=provider or adapter_cls.name, transport=transport)


def raises(exc_type: type, coro: Any) -> Any:
    with pytest.raises(exc_type) as info:
        run(coro)
    return info.value


def reset_all(runner: Any) -> None:
    from actors.sandbox.base import Faults

    for stand_in in runner.stand_ins.values():
        stand_in.faults = Faults()
        stand_in.received.clear()
        stand_in.reset()

