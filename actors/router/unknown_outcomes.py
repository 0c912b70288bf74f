"""What a router does about sends whose outcome it could not see.

A send that timed out after it may have gone out, or whose provider actor
died mid-send, is never sent elsewhere: the provider is asked what happened
(its delivery journal, then the provider's own records, through the
injected `resolve`), and if it cannot tell, the request is parked in the
outbox for an operator. A request whose key has earlier attempts in the
providers' journals (its router may have crashed) is settled from them
before anything is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from actors.clock import Clock
from actors.durable import JournalEntry, StateStore, StoreUnavailable
from actors.durable.retry import within
from actors.errors import ActorUnreachable, ErrorKind, ProviderError
from actors.messages import CallContext, InvokeResult, Resolution
from actors.policy.gates import MIN_ATTEMPT_S
from actors.router.coalesce import PerTurn
from actors.router.request import Request
from actors.router.results import failed, succeeded
from actors.specs import ProviderSpec

__all__ = ["RESOLVE_RETRY_S", "Resolve", "Settler"]

# How often a router asks a restarting provider actor what happened to a send.
RESOLVE_RETRY_S = 0.25

Resolve = Callable[[str, str, Any, CallContext], Awaitable[Resolution]]


class Settler:
    def __init__(self, capability: str, providers: dict[str, ProviderSpec], resolve: Resolve | None,
                 store: Callable[[], StateStore], clock: Clock, count: Callable[[str], None]):
        self.capability = capability
        self.providers = providers
        self._resolve = resolve
        self._store = store
        self._clock = clock
        self._count = count
        self._journal_reads: PerTurn[str, list[JournalEntry]] = PerTurn(self._read_journals)

    async def _read_journals(self, keys: list[str]) -> list[list[JournalEntry]]:
        found = await self._store().journal_find_many(self.capability, keys)
        return [found.get(key, []) for key in keys]

    async def recover(self, r: Request) -> InvokeResult | None:
        """Settle what earlier attempts with this key left in the providers'
        journals (the router that made them may have crashed): a delivery is
        returned, a send in doubt is asked about, never sent elsewhere."""
        assert r.key is not None
        key = r.key
        found = await within(r.deadline, lambda: self._journal_reads(key), sleep=self._clock.sleep,
                             clock=self._clock.monotonic)
        entries = [e for e in found if e.provider in self.providers]
        delivered = [e for e in entries if e.state == "delivered"]
        # A real delivery wins; the outbox's own record that it queued the
        # request counts only when we are not the ones delivering it from there.
        for e in sorted(delivered, key=lambda e: self.providers[e.provider].last_resort):
            last_resort = self.providers[e.provider].last_resort
            if not (last_resort and r.draining):
                return succeeded(r, e.provider, e.value, last_resort=last_resort, replayed=True)
        for e in entries:
            if e.state in ("started", "unknown") and not self.providers[e.provider].last_resort:
                settled = await self.settle(r, e.provider, e.error)
                if settled is not None:
                    return settled
        return None

    async def settle(self, r: Request, name: str, error: str | None) -> InvokeResult | None:
        """After a send whose outcome we could not see: ask the provider (its
        journal, then the provider's own records) until the deadline. Returns
        the result if it was delivered or stays unknown (parked); None if it
        certainly was not, so falling back is safe."""
        resolution = await self.ask(name, r)
        self._count(f"resolved_{resolution.state}")
        if resolution.state == "delivered":
            return succeeded(r, name, resolution.value, last_resort=self.providers[name].last_resort, replayed=True)
        if resolution.state == "not_delivered":
            return None
        why = resolution.error or error or "no answer"
        try:
            item = await within(max(r.deadline, self._clock.monotonic() + 1.0), lambda: self._park(r, name, why),
                                sleep=self._clock.sleep, clock=self._clock.monotonic)
        except StoreUnavailable as exc:
            return failed(r, ErrorKind.OUTCOME_UNKNOWN,
                          f"{name} may or may not have delivered this ({why}); it was not sent anywhere else, "
                          f"and could not be parked in the outbox ({exc}). A retry with its idempotency key "
                          "settles it from the provider's journal, never sending it twice")
        # Cut off by the deadline, the request ends as deadline_exceeded; either
        # way it was not sent elsewhere, and a retry with its key sends nothing.
        out_of_time = self._clock.monotonic() >= r.deadline - MIN_ATTEMPT_S
        kind = ErrorKind.DEADLINE_EXCEEDED if out_of_time else ErrorKind.OUTCOME_UNKNOWN
        result = failed(r, kind, f"{name} may or may not have delivered this ({why}); it was not sent anywhere "
                                 f"else. Parked as outbox item {item}: see `aicmo-gateway outbox list`")
        return msgspec.structs.replace(result, outbox_id=item)

    async def ask(self, name: str, r: Request) -> Resolution:
        """What provider `name` knows of the request's key, asked until the deadline."""
        if self._resolve is None:
            return Resolution(state="unknown", error="this router cannot ask providers")
        while True:
            remaining = r.deadline - self._clock.monotonic()
            if remaining < MIN_ATTEMPT_S:
                return Resolution(state="unknown", error="the deadline passed before the provider could be asked")
            try:
                return await self._resolve(name, r.spec.name, r.payload, r.context(remaining))
            except (ActorUnreachable, ProviderError) as exc:
                # A restarting actor comes back under its name: ask again.
                await self._clock.sleep(min(RESOLVE_RETRY_S, max(0.0, remaining - MIN_ATTEMPT_S)))
                last = exc.message
                if r.deadline - self._clock.monotonic() < MIN_ATTEMPT_S:
                    return Resolution(state="unknown", error=f"the provider actor did not answer: {last}")

    async def _park(self, r: Request, name: str, why: str) -> int:
        assert r.key is not None
        store = self._store()
        now = self._clock.time()
        live = await store.outbox_find(self.capability, r.key)
        if live is not None and live.state in ("pending", "parked"):
            await store.outbox_update(live.id, now, state="parked", reason="outcome_unknown", provider=name, error=why)
            return live.id
        item = await store.outbox_add(capability=self.capability, method=r.spec.name,
                                      payload=msgspec.to_builtins(r.payload), idempotency_key=r.key,
                                      request_id=r.base["request_id"], reason="outcome_unknown", now=now,
                                      provider=name, error=why)
        return item.id
