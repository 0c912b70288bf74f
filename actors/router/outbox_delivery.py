"""Delivering what a capability's outbox holds, through its router's routing.

Queued requests are delivered oldest first, at a bounded rate, each exactly
once: under its own idempotency key, so the providers' journals drop any
repeat, and with the outbox itself left out of the candidates. Requests
parked with an unknown outcome are asked about again; an operator may force
one out once they know it was not delivered.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Protocol

import msgspec

from actors.clock import Clock
from actors.durable import OutboxItem, StateStore, StoreUnavailable
from actors.errors import ErrorKind
from actors.messages import ErrorInfo, InvokeResult, Resolution
from actors.payloads import METHODS, PayloadError, validate_payload
from actors.router.idempotency import LEASE_GRACE_S, IdempotencyRecords, Refused, fingerprint
from actors.router.request import Request
from actors.router.results import failed, store_down, succeeded
from actors.specs import ProviderSpec, RoutingSpec

# Items leased per step of a drain round.
LEASE_CHUNK = 10


class Router(Protocol):
    """What outbox delivery uses of its capability's router (RouterCore's
    public surface): an item is delivered as a request through `route`."""

    capability: str
    routing: RoutingSpec
    providers: dict[str, ProviderSpec]
    results: IdempotencyRecords
    clock: Clock
    tracing: Any                     # actors/telemetry: Tracing, or NO_TRACING

    def store(self) -> StateStore: ...

    def count(self, name: str) -> None: ...

    def real_provider_available(self) -> bool: ...

    async def route(self, r: Request, recover: bool) -> InvokeResult: ...

    async def ask(self, name: str, r: Request) -> Resolution: ...

    def finish(self, started: float, result: InvokeResult, r: Request | None = None) -> InvokeResult: ...


class OutboxDelivery:
    def __init__(self, core: Router):
        self.core = core
        # One round at a time per capability: a supervisor restarted mid-drain,
        # or an operator's replay during the periodic drain, must not deliver
        # an item a second time through a provider the first round did not use.
        self._lock: asyncio.Lock | None = None
        self.owner = f"{core.results.owner}/outbox"

    def _serial(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def drain(self, limit: int = 100, rate_per_s: float = 20.0, ids: list[int] | None = None) -> dict[str, Any]:
        """Deliver queued requests through the real providers, oldest first,
        each exactly once (the same key, so the providers' journals drop any
        repeat), at most `rate_per_s`. Stops at the first failure, keeping
        the order; an operator's `ids` are delivered whatever their place."""
        async with self._serial():
            return await self._drain(limit, rate_per_s, ids)

    def _lease_s(self, n: int, rate_per_s: float) -> float:
        # Long enough for n deliveries at the rate, each up to its deadline.
        return n / rate_per_s + self.core.routing.deadline_s + LEASE_GRACE_S

    async def _drain(self, limit: int, rate_per_s: float, ids: list[int] | None) -> dict[str, Any]:
        core = self.core
        store = core.store()
        report: dict[str, Any] = {"capability": core.capability, "delivered": [], "failed": [], "left": 0}
        done = 0
        while done < limit:
            # A few at a time: what this round leases, another drain (another
            # supervisor's, or an operator's) skips instead of delivering too.
            n = len(ids) if ids else min(LEASE_CHUNK, limit - done)
            items = await store.outbox_lease(core.capability, self.owner, self._lease_s(n, rate_per_s), n, ids=ids)
            if not items:
                break
            try:
                for n_item, item in enumerate(items):
                    if not ids and not core.real_provider_available():
                        report["left"] += len(items) - n_item
                        return report
                    result = await self._deliver_item(item)
                    done += 1
                    if result.ok:
                        report["delivered"].append(item.id)
                    else:
                        report["failed"].append({"id": item.id, "error": result.error.message if result.error else ""})
                        if not ids:
                            report["left"] += len(items) - n_item - 1
                            return report
                    await core.clock.sleep(1 / rate_per_s)
            finally:
                await store.outbox_release([item.id for item in items], self.owner)
            if ids:
                break
        return report

    def _item_request(self, item: OutboxItem, deadline_s: float) -> Request | str:
        """The item as a request, or why it no longer is one."""
        core = self.core
        spec = METHODS[core.capability][item.method]
        base = dict(request_id=uuid.uuid4().hex, idempotency_key=item.idempotency_key, dry_run=False,
                    capability=core.capability, method=item.method)
        try:
            payload = validate_payload(spec, item.payload)
        except PayloadError as exc:
            return str(exc)
        return Request(spec=spec, payload=payload, key=item.idempotency_key, journal=not spec.idempotent,
                       deadline=self.core.clock.monotonic() + deadline_s, deadline_s=deadline_s, base=base, draining=True)

    async def _invalid(self, item: OutboxItem, why: str) -> InvokeResult:
        await self.core.store().outbox_update(item.id, self.core.clock.time(), state="parked",
                                              error=f"no longer a valid payload: {why}")
        return InvokeResult(ok=False, capability=self.core.capability, method=item.method,
                            idempotency_key=item.idempotency_key, request_id=uuid.uuid4().hex,
                            error=ErrorInfo(kind=ErrorKind.INVALID_REQUEST, message=why))

    async def _deliver_item(self, item: OutboxItem) -> InvokeResult:
        """One item delivered; traced (actors/telemetry) as a request of its
        own, linked to the request that queued it."""
        if not self.core.tracing.on:
            return await self._deliver(item, None)
        core = self.core
        span = core.tracing.request(core.capability, item.method, None, request_id="", key=item.idempotency_key,
                                    deadline_s=core.routing.deadline_s, dry_run=False)
        span.set("aicmo.outbox_id", item.id)
        try:
            with core.tracing.store(span, "queued result"):
                queued = await core.results.stored(item.idempotency_key)  # its answer holds the queuing request's trace
            if queued is not None:
                span.link(queued.trace_id, queued.span_id)
            result = await self._deliver(item, span)
        except BaseException as exc:
            span.failed(exc)
            raise
        span.end(result)
        return result

    async def _deliver(self, item: OutboxItem, span: Any) -> InvokeResult:
        core = self.core
        started = core.clock.monotonic()
        r = self._item_request(item, core.routing.deadline_s)
        if isinstance(r, str):
            return await self._invalid(item, r)
        if span is not None:
            r.trace = span
            span.set("aicmo.request_id", r.base["request_id"])
            if span.trace_id is not None:
                r.base.update(trace_id=span.trace_id, span_id=span.span_id)
        key = item.idempotency_key
        print_ = fingerprint(item.method, r.payload)
        # Takes the key over from its stored "queued" answer; a caller sending
        # this very key right now (here or at another router) is waited for.
        claim = await core.results.acquire(key, print_, r.deadline, redeliver=True)
        if isinstance(claim, Refused):
            return failed(r, claim.kind, claim.message)
        result = InvokeResult(ok=False, **r.base)
        try:
            result = core.finish(started, await core.route(r, recover=True), r)
            if result.ok:
                result = msgspec.structs.replace(result, outbox_id=item.id)
        except StoreUnavailable as exc:
            result = store_down(r, exc)
        finally:
            await core.results.release(key, result, print_, r.deadline)
        store, now = core.store(), core.clock.time()
        if result.ok:
            await store.outbox_update(item.id, now, state="delivered", result=msgspec.to_builtins(result.value),
                                      provider=result.provider, attempts=item.attempts + 1)
            core.count("outbox_delivered")
        elif result.outbox_id is None:  # not parked meanwhile: still pending
            await store.outbox_update(item.id, now, attempts=item.attempts + 1,
                                      error=(result.error.message if result.error else "")[:500])
        return result

    async def settle_parked(self, ids: list[int] | None = None, deadline_s: float = 5.0) -> dict[str, Any]:
        """Ask again about requests parked with an unknown outcome: one the
        provider now confirms is marked delivered; one it says it never
        delivered goes back to the queue (and is delivered once)."""
        async with self._serial():
            return await self._settle_parked(ids, deadline_s)

    async def _settle_parked(self, ids: list[int] | None, deadline_s: float) -> dict[str, Any]:
        core = self.core
        store = core.store()
        items = [await store.outbox_get(i) for i in ids] if ids else await store.outbox_list(core.capability, ("parked",))
        report: dict[str, Any] = {"capability": core.capability, "delivered": [], "requeued": [], "unknown": []}
        for item in items:
            if item is None or item.state != "parked" or item.provider not in core.providers:
                continue
            r = self._item_request(item, deadline_s)
            if isinstance(r, str):
                continue
            resolution = await core.ask(item.provider, r)
            now = core.clock.time()
            if resolution.state == "delivered":
                await store.outbox_update(item.id, now, state="delivered", result=resolution.value)
                await self._keep(r, item, succeeded(r, item.provider, resolution.value, replayed=True,
                                                     last_resort=core.providers[item.provider].last_resort))
                report["delivered"].append(item.id)
            elif resolution.state == "not_delivered":
                await store.outbox_update(item.id, now, state="pending", error="the provider confirmed it was not delivered")
                report["requeued"].append(item.id)
            else:
                report["unknown"].append(item.id)
        return report

    async def _keep(self, r: Request, item: OutboxItem, result: InvokeResult) -> None:
        """The key's first result becomes `result` (it held the parked one)."""
        results = self.core.results
        print_ = fingerprint(item.method, r.payload)
        claim = await results.acquire(item.idempotency_key, print_, r.deadline, redeliver=True)
        if not isinstance(claim, Refused):
            await results.release(item.idempotency_key, result, print_, r.deadline)

    async def replay(self, ids: list[int], force: bool = False) -> dict[str, Any]:
        """An operator's replay: parked items are asked about first; with
        `force`, one still unknown is taken as not delivered (the operator
        checked) and sent."""
        async with self._serial():
            return await self._replay(ids, force)

    async def _replay(self, ids: list[int], force: bool) -> dict[str, Any]:
        core = self.core
        store = core.store()
        settled = await self._settle_parked(ids, 5.0)
        if force:
            for item_id in settled["unknown"]:
                item = await store.outbox_get(item_id)
                assert item is not None
                found = await store.journal_find_many(core.capability, [item.idempotency_key])
                await store.journal_put_many([
                    msgspec.structs.replace(e, state="failed", incarnation="operator", updated_at=core.clock.time(),
                                            error="an operator replayed it")
                    for e in found.get(item.idempotency_key, []) if e.state in ("started", "unknown")])
                await store.outbox_update(item_id, core.clock.time(), state="pending", error="replayed by an operator")
        pending = [i for i in ids if (item := await store.outbox_get(i)) is not None and item.state == "pending"]
        report = await self._drain(100, 20.0, pending) if pending else {"delivered": [], "failed": []}
        return {**report, "capability": core.capability, "settled": settled}
