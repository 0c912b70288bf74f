"""In-process fakes for unit tests: a scripted adapter and specs built from a dict."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from actors.adapters.base import Adapter, AdapterSettings
from actors.config import parse_config
from actors.messages import CallContext
from actors.specs import CapabilitySpec, ProviderSpec, build_spec


def capability_spec(providers: list[str], capability: str = "email_sending", provider_policy: dict[str, dict] | None = None,
                    **routing: Any) -> CapabilitySpec:
    """Providers named `outbox` get the outbox adapter; the others `simulated`
    (tests swap in scripted adapters). `provider_policy` maps a name to its policy."""
    policies = provider_policy or {}
    raw = {"policy": {"routing": routing}, "state": {"url": "sqlite:///:memory:"},
           "capabilities": {capability: {"providers": [
               {"name": n, "adapter": "outbox" if n == "outbox" else "simulated", "policy": policies.get(n, {})}
               for n in providers]}}}
    return build_spec(parse_config(raw, env={})).capabilities[0]


def provider_spec(**settings: Any) -> ProviderSpec:
    return capability_spec(["p"]).providers[0]


class ScriptedAdapter(Adapter):
    """Answers each call with the next item of a script: a value, an exception, or a callable."""

    name = "scripted"
    Settings = AdapterSettings

    def __init__(self, script: list[Any] | None = None, secrets: list[str] | None = None):
        super().__init__(AdapterSettings(), capability="email_sending", provider="p")
        self.script = list(script or [])
        self.calls: list[tuple[str, Any, CallContext]] = []
        self._secrets = secrets or []

    async def call(self, method: str, payload: Any, ctx: CallContext) -> dict[str, Any]:
        self.calls.append((method, payload, ctx))
        item: Any = self.script.pop(0) if self.script else {"message_id": "m"}
        if callable(item) and not isinstance(item, type):
            item = item()
            if asyncio.iscoroutine(item):
                item = await item
        if isinstance(item, BaseException):
            raise item
        return item

    async def probe(self) -> None:
        item = self.script.pop(0) if self.script else None
        if isinstance(item, BaseException):
            raise item


class Clock:
    """Wall time that moves only when a test moves it (`now`). Its monotonic
    time is the real one, as providers' timeouts are, unless `virtual`: then
    it is `now` too, and a test of deadlines never sleeps."""

    def __init__(self, now: float = 1000.0, virtual: bool = False):
        self.now = now
        self.virtual = virtual

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now if self.virtual else time.monotonic()


def sleeper(seconds: float) -> Callable[[], Any]:
    async def slow() -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return {"message_id": "slow"}

    return slow


def taking(clock: Clock, seconds: float, value: Any = None) -> Callable[[], Any]:
    """A script item that takes `seconds` of a virtual clock's time, without sleeping."""
    def answer() -> Any:
        clock.now += seconds
        return {"message_id": "timed"} if value is None else value

    return answer
