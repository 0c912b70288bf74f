"""In-process fakes for unit tests: a scripted adapter and specs built from a dict."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from actors.adapters.base import Adapter, AdapterSettings
from actors.config import parse_config
from actors.messages import CallContext, CallReply, ProviderStatus
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
    """Wall time that moves only when a test moves it (`now`), with the
    three readings of actors.clock.Clock (`time`, `monotonic`, `sleep`), so
    it is given wherever the gateway takes its clock.

    Its monotonic time is the real one, as the event loop's timeouts are,
    unless `virtual`: then it is `now` too, and a test of deadlines never
    sleeps. Its sleep takes no real time: it moves `now` by the time slept
    (kept in `slept`) and yields once, so the others run meanwhile. A loop
    that pauses forever in the background would race the clock ahead: give
    it `paused` instead."""

    def __init__(self, now: float = 1000.0, virtual: bool = False):
        self.now = now
        self.virtual = virtual
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now if self.virtual else time.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool], give_up_s: float = 30.0) -> None:
    """Waits until `condition()` holds, looking again at each turn of the
    event loop (a store's thread answers meanwhile). `give_up_s` only ends a
    test that would hang: what it waits for comes at once or never."""
    give_up = asyncio.get_running_loop().time() + give_up_s
    while not condition():
        if asyncio.get_running_loop().time() > give_up:
            raise AssertionError(f"still not so after {give_up_s:g}s")
        await asyncio.sleep(0.001)


async def paused(seconds: float) -> None:
    """A sleep that lasts until its task is cancelled: a background loop's
    pause (the spend flush) in a test that runs its rounds by hand."""
    await asyncio.Event().wait()


class Heard:
    """A provider listener (actors/provider/listener.py) that keeps what it
    heard, in order, as (event, argument) pairs."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def of(self, event: str) -> list[Any]:
        return [arg for name, arg in self.events if name == event]

    def on_reply(self, reply: CallReply, dry_run: bool) -> None:
        self.events.append(("on_reply", reply))

    def on_health_changed(self, status: ProviderStatus) -> None:
        self.events.append(("on_health_changed", status))

    def on_quota_flip(self, status: ProviderStatus) -> None:
        self.events.append(("on_quota_flip", status))

    def on_spend(self, amount: float) -> None:
        self.events.append(("on_spend", amount))

    def on_fault_applied(self, action: str) -> None:
        self.events.append(("on_fault_applied", action))


def sleeper(seconds: float) -> Callable[[], Any]:
    """A script item that takes `seconds` of real time (the router's own
    tests of hedging and attempt timeouts)."""
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
