"""A router with in-process providers: ProviderCore instances around scripted
adapters, reached through the same `send`/`resolve` seams the actor uses,
sharing one in-memory state store. `restart_router()` and
`restart_provider()` build new cores on the same store, as Ray does after a
crash."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.adapters.outbox import OutboxAdapter
from actors.clock import Clock as RouterClock
from actors.durable import JournalEntry, KeyClaim
from actors.durable.sqlite import SqliteStore
from actors.errors import ActorUnreachable, ErrorKind
from actors.messages import CallContext
from actors.payloads import METHODS, validate_payload
from actors.provider.core import ProviderCore
from actors.router.core import RouterCore
from actors.router.idempotency import fingerprint
from actors.telemetry import NO_TRACING
from tests.unit.fakes import Clock, ScriptedAdapter, capability_spec

EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


class Harness:
    def __init__(self, scripts: dict[str, list[Any]], clock: Clock | None = None, capability: str = "email_sending",
                 provider_policy: dict[str, dict] | None = None, tracing: Any = NO_TRACING, **routing: Any):
        self.clock = clock or Clock()
        self.tracing = tracing  # actors/telemetry: the router's and the providers' spans
        self.spec = capability_spec(list(scripts), capability, provider_policy, **routing)
        self.store = SqliteStore(":memory:")
        self.adapters: dict[str, Any] = {}
        self.providers: dict[str, ProviderCore] = {}
        for p in self.spec.providers:
            if p.name == "outbox":
                self.adapters[p.name] = OutboxAdapter(OutboxAdapter.Settings(), capability=capability, provider="outbox")
            else:
                self.adapters[p.name] = ScriptedAdapter(scripts[p.name])
            self.restart_provider(p.name)
        self.dead: set[str] = set()
        self.sleeps: list[float] = []
        self.batches: list[tuple[str, int]] = []  # (provider, calls) of every call_many
        self.restart_router()

    async def fake_sleep(self, seconds: float) -> None:
        """Sleeping moves the harness clock instead of the real one."""
        self.sleeps.append(seconds)
        self.clock.now += seconds
        await asyncio.sleep(0)

    def restart_router(self, real_sleep: bool = False) -> RouterCore:
        clock = RouterClock(time=self.clock, monotonic=self.clock.monotonic,
                            sleep=asyncio.sleep if real_sleep else self.fake_sleep)
        self.router = RouterCore(self.spec, self.send, self.resolve, clock=clock, store=self.store,
                                 send_many=self.send_many, tracing=self.tracing)
        return self.router

    def restart_provider(self, name: str) -> ProviderCore:
        spec = next(p for p in self.spec.providers if p.name == name)
        self.providers[name] = ProviderCore(spec, self.adapters[name], clock=self.clock, store=self.store,
                                            tracing=self.tracing)
        return self.providers[name]

    async def send(self, name: str, method: str, payload: Any, ctx: CallContext):
        if name in self.dead:
            raise ActorUnreachable(ErrorKind.CRASHED, f"{name}: provider actor died")
        return await self.providers[name].call(method, payload, ctx)

    async def send_many(self, name: str, calls: list[Any]):
        self.batches.append((name, len(calls)))
        if name in self.dead:
            raise ActorUnreachable(ErrorKind.CRASHED, f"{name}: provider actor died")
        return await self.providers[name].call_many(calls)

    async def resolve(self, name: str, method: str, payload: Any, ctx: CallContext):
        if name in self.dead:
            raise ActorUnreachable(ErrorKind.UNAVAILABLE, f"{name}: provider actor is restarting")
        return await self.providers[name].resolve(method, payload, ctx)

    def invoke(self, payload: Any = EMAIL, method: str = "send_email", **kw: Any):
        return asyncio.run(self.router.invoke(method, payload, **kw))

    @property
    def db(self) -> "Blocking":
        """The shared store, called without an event loop (the checks of a test)."""
        return Blocking(self.store)

    def left_by_a_crash(self, provider: str, key: str, state: str = "started") -> None:
        """A journal entry written by a process of `provider` that died mid-send."""
        asyncio.run(self.store.journal_put_many([JournalEntry(
            capability=self.spec.capability, provider=provider, key=key, request_id="r-dead", method="send_email",
            state=state, incarnation="dead", updated_at=self.clock())]))

    def claimed_by_a_router_that_died(self, key: str, payload: Any = EMAIL, method: str = "send_email") -> None:
        """The key's record as a router left it when its process died (its
        successor ends such claims when it starts)."""
        print_ = fingerprint(method, validate_payload(METHODS[self.spec.capability][method], payload))
        asyncio.run(self.store.claim_keys(self.spec.capability, [KeyClaim(key, print_)], "dead-router:1", 0.0, 0.0))

    def calls(self, name: str) -> int:
        return len(self.adapters[name].calls)


class Blocking:
    """A store's methods, each run to its end in a loop of its own."""

    def __init__(self, store: Any):
        self._store = store

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        return lambda *args, **kwargs: asyncio.run(method(*args, **kwargs))
