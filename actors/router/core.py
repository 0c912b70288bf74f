"""Routing one capability's requests, without Ray.

For each request: validate the payload; answer a repeated idempotency key
from its first result (idempotency.py); route it in rounds: each round
(attempts.py) settles what an earlier, crashed attempt left unknown, plans
the providers to try (planner.py over policy/planning.py) and walks the
plan through the gates (policy/gates.py); when every provider failed in a
way that may pass, another round follows after a pause (policy/rounds.py).
The answer is finished (finishing.py): timed, observed, logged. `invoke`
never raises for a provider's failure or bad input.

Every decision is policy's (actors/policy), made over snapshots: this class
and its collaborators read the state, ask and act. Injected: the provider
actors are reached through `send` and `resolve`, time through one `clock`
(wall time, monotonic time, sleep), randomness through `rng`, so tests drive
this class with in-process providers and a fake clock. Outbox delivery
(outbox_delivery.py) uses the small public surface marked below.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from actors.clock import SYSTEM_CLOCK, Clock
from actors.durable import StateStore, StoreUnavailable
from actors.errors import ErrorKind
from actors.messages import CapabilityStatus, ErrorInfo, InvokeResult, ProviderStatus, Resolution
from actors.payloads import METHODS, PayloadError, check_options, clamp_deadline, shown, validate_payload
from actors.policy.budget import RetryBudget
from actors.policy.health import HealthSnapshot
from actors.policy.planning import Plan
from actors.policy.ranking import load_rank_policy
from actors.policy.rounds import Backoff, RoundEnd, next_round
from actors.router.attempts import Attempts, Send
from actors.router.coalesce import Coalescer, SendMany, batching
from actors.router.delivery_health import DeliveryHealth
from actors.router.drop_fallback import DropFallback
from actors.router.suppression import suppressed
from actors.router.ejection import Outliers
from actors.router.finishing import Finisher
from actors.router.idempotency import IdempotencyRecords, OwnerGone, Refused, Replayed, fingerprint
from actors.router.outbox_delivery import OutboxDelivery
from actors.router.planner import Planner
from actors.router.provider_views import ProviderViews
from actors.router.request import Request
from actors.router.results import failed, store_down
from actors.router.unknown_outcomes import Resolve, Settler
from actors.ops.privacy import method_label
from actors.specs import CapabilitySpec, open_spec_store
from actors.telemetry.spans import NO_TRACING, RequestSpan

__all__ = ["RouterCore", "Send"]


class RouterCore:
    def __init__(self, spec: CapabilitySpec, send: Send, resolve: Resolve | None = None, *,
                 clock: Clock = SYSTEM_CLOCK, store: StateStore | None = None, send_many: SendMany | None = None,
                 owner: str | None = None, rng: random.Random | None = None,
                 owner_gone: OwnerGone | None = None, tracing: Any = NO_TRACING):
        """`owner_gone`: whether the router that holds a key's claim is dead
        (idempotency.py: a sibling replica then takes the key over).
        `tracing`: actors/telemetry's Tracing, or NO_TRACING (off)."""
        self.tracing = tracing
        self.spec = spec
        self.capability = spec.capability
        self.routing = spec.routing
        self.clock = clock
        self._random = rng or random.Random()
        self._store = store
        self.providers = {p.name: p for p in spec.providers}
        self.seen = ProviderViews(spec.providers)  # the router's picture of its providers (provider_views.py)
        self.views, self.latency, self.buckets = self.seen.views, self.seen.latency, self.seen.buckets
        rb = spec.routing.retry_budget
        self.budget = RetryBudget(percent=rb.percent, min_per_s=rb.min_per_s, ttl_s=rb.ttl_s)
        self.backoff = Backoff(rounds=spec.routing.retry_rounds, base_ms=spec.routing.retry_backoff_ms,
                               max_ms=spec.routing.retry_backoff_max_ms)
        self.results = IdempotencyRecords(self.capability, spec.routing.idempotency_window_s, clock, self.store,
                                          owner=owner, owner_gone=owner_gone)
        self.counters: dict[str, int] = {}
        self.settler = Settler(self.capability, self.providers, resolve, self.store, clock, self.count)
        self.outbox = OutboxDelivery(self)
        self.outliers = Outliers(spec, clock)  # outlier ejection (ejection.py): windows, states, the sweep
        self.delivery = DeliveryHealth(self.capability, spec.delivery_health, clock)  # delivery_health.py
        self.drops = DropFallback(self.capability, spec.drop_fallback, self.store, clock)  # drop_fallback.py
        self.planner = Planner(self.capability, self.seen, self.outliers, load_rank_policy(spec.routing.ranking), clock,
                               self.delivery)
        self.finishing = Finisher(self.capability, self.providers, clock, spec.routing.recent_operations, self.count)
        self.observers, self.recent = self.finishing.observers, self.finishing.recent
        self.attempts = Attempts(spec, send, Coalescer(send_many) if send_many is not None else None, clock=clock,
                                 planner=self.planner, seen=self.seen, outliers=self.outliers, settler=self.settler,
                                 budget=self.budget, count=self.count, tracing=tracing)

    # --- the surface outbox delivery uses (outbox_delivery.Router) ---------------
    def store(self) -> StateStore:
        if self._store is None:
            self._store = open_spec_store(self.spec.state)
        return self._store

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def real_provider_available(self) -> bool:
        """Whether a real provider (not the outbox) would be tried now."""
        return self.planner.real_provider_available()

    async def route(self, r: Request, recover: bool) -> InvokeResult:
        """Tries the request in rounds (attempts.py), as long as
        policy/rounds.py finds another one worth its pause."""
        first = len(r.attempts)
        result = await self.attempts.round(r, recover)
        while (pause := next_round(self._round_end(r, result, first), self.backoff, self._random)) is not None:
            r.retry_rounds += 1
            self.count("retry_rounds")
            await self.clock.sleep(pause)
            first = len(r.attempts)
            result = await self.attempts.round(r, recover=False)
        return result

    def _round_end(self, r: Request, result: InvokeResult, first: int) -> RoundEnd:
        """The snapshot policy/rounds.py reads once a round has ended."""
        return RoundEnd(error_kind=result.error.kind if result.error else None, in_outbox=result.outbox_id is not None,
                        draining=r.draining, attempts=r.attempts, first=first, rounds_done=r.retry_rounds,
                        remaining_s=r.deadline - self.clock.monotonic(), now=self.clock.time(), budget=self.budget)

    async def ask(self, name: str, r: Request) -> Resolution:
        """What provider `name` knows of the request's key (unknown_outcomes.py)."""
        return await self.settler.ask(name, r)

    def finish(self, started: float, result: InvokeResult, r: Request | None = None) -> InvokeResult:
        """The result timed, observed and logged (finishing.py). `started`: on the clock's monotonic time."""
        return self.finishing.finish(started, result, r)

    # --- requests ------------------------------------------------------------
    async def invoke(self, method: str, payload: Any, idempotency_key: str | None = None,
                     dry_run: bool | None = None, deadline_s: float | None = None,
                     traceparent: str | None = None, exclude: Sequence[str] = ()) -> InvokeResult:
        """`traceparent`: the caller's span (W3C trace context), the parent of
        this request's span when tracing is on (actors/telemetry). `exclude`:
        providers never tried for it (the drop fallback's re-send)."""
        request_id = uuid.uuid4().hex
        dry = self.spec.dry_run if dry_run is None else bool(dry_run)
        if not self.tracing.on:
            return await self._invoke(method, payload, idempotency_key, dry, deadline_s, request_id, None, exclude)
        span = self.tracing.request(self.capability, method_label(self.capability, method), traceparent,
                                    request_id=request_id, key=idempotency_key, deadline_s=deadline_s, dry_run=dry)
        try:
            result = await self._invoke(method, payload, idempotency_key, dry, deadline_s, request_id, span, exclude)
        except BaseException as exc:
            span.failed(exc)
            raise
        span.end(result)
        return result

    async def _invoke(self, method: str, payload: Any, idempotency_key: str | None, dry: bool,
                      deadline_s: float | None, request_id: str, span: RequestSpan | None,
                      exclude: Sequence[str] = ()) -> InvokeResult:
        started = self.clock.monotonic()
        base = dict(request_id=request_id, idempotency_key=idempotency_key, dry_run=dry,
                    capability=self.capability, method=method)
        if span is not None and span.trace_id is not None:
            base.update(trace_id=span.trace_id, span_id=span.span_id)

        spec = METHODS[self.capability].get(method) if isinstance(method, str) else None
        if spec is None:
            known = ", ".join(METHODS[self.capability])
            asked = shown(method) if isinstance(method, str) else shown(repr(method))
            return self.finish(started, InvokeResult(ok=False, error=ErrorInfo(
                kind=ErrorKind.UNKNOWN_METHOD, message=f"{self.capability} has no method {asked}; it has: {known}"), **base))
        try:
            payload = validate_payload(spec, payload)
            check_options(idempotency_key, deadline_s)
        except PayloadError as exc:
            return self.finish(started, InvokeResult(ok=False, error=ErrorInfo(kind=ErrorKind.INVALID_REQUEST, message=str(exc)), **base))

        if self.spec.suppress and not dry:
            refused = await suppressed(self.store, self.capability, payload)
            if refused is not None:
                return self.finish(started, InvokeResult(ok=False, error=ErrorInfo(kind=ErrorKind.SUPPRESSED,
                                                                                   message=refused), **base))

        key = idempotency_key
        if key is None and not spec.idempotent and not dry:
            # Every send carries a key, so the journal can tell whether it was
            # delivered; the caller gets it back and may retry with it.
            key = base["idempotency_key"] = f"auto-{request_id}"
        deadline_s = clamp_deadline(deadline_s, self.routing.deadline_s, self.routing.max_deadline_s)
        request = Request(spec=spec, payload=payload, key=key, journal=(key is not None and not spec.idempotent and not dry),
                          deadline=started + deadline_s, deadline_s=deadline_s, base=base, trace=span,
                          excluded=frozenset(exclude))
        if span is not None:
            span.set("aicmo.deadline_s", deadline_s)
        if key is None or dry:
            return self.finish(started, await self.route(request, recover=False), request)

        print_ = fingerprint(method, payload)
        callers_key = idempotency_key is not None  # a generated key is unknown to anyone else: no claim to race for
        try:
            with self.tracing.store(span, "claim"):
                claim = await self.results.acquire(key, print_, request.deadline, durable=callers_key)
        except StoreUnavailable as exc:
            return self.finish(started, store_down(request, exc), request)
        if isinstance(claim, Replayed):
            if span is None:
                return msgspec.structs.replace(claim.result, replayed=True)
            span.link(claim.result.trace_id, claim.result.span_id)  # the request that made the result
            return msgspec.structs.replace(claim.result, replayed=True, trace_id=span.trace_id, span_id=span.span_id)
        if isinstance(claim, Refused):
            return self.finish(started, failed(request, claim.kind, claim.message), request)
        result = InvokeResult(ok=False, **base)
        try:
            # Only a key with an earlier record can have sends in the journals to settle.
            result = await self.route(request, recover=claim.resumed)
        except StoreUnavailable as exc:
            result = store_down(request, exc)
        finally:
            with self.tracing.store(span, "record"):
                await self.results.release(key, result, print_, request.deadline, durable=callers_key)
        if result.ok and not result.replayed:
            await self.drops.keep(payload, result)   # for the drop fallback, when it is on (drop_fallback.py)
        return self.finish(started, result, request)

    async def invoke_many(self, requests: list[Any]) -> list[InvokeResult]:
        async def one(item: Any) -> InvokeResult:
            try:
                method, payload, *rest = item
                options = rest[0] if rest and rest[0] else {}
                if not isinstance(options, dict):
                    raise TypeError("options must be a dict")
                return await self.invoke(method, payload, **options)
            except (TypeError, ValueError) as exc:
                return InvokeResult(ok=False, capability=self.capability, request_id=uuid.uuid4().hex, error=ErrorInfo(
                    kind=ErrorKind.INVALID_REQUEST,
                    message=f"each request is (method, payload, options): {exc}"))

        token = batching.set(True)  # the tasks gather starts copy it: their sends are coalesced
        try:
            return list(await asyncio.gather(*(one(item) for item in requests)))
        finally:
            batching.reset(token)

    async def resend(self, payload: Any, key: str, exclude: Sequence[str]) -> InvokeResult:
        """The drop fallback's re-send (drop_fallback.py)."""
        return await self.invoke("send_email", msgspec.to_builtins(payload), idempotency_key=key, exclude=exclude)

    # --- health (provider_views.py) ----------------------------------------------
    def health_changed(self, name: str, health: HealthSnapshot) -> None:
        self.seen.health_changed(name, health)

    def provider_back(self, name: str) -> HealthSnapshot | None:
        """A provider actor Ray restarted is back (ProviderViews.provider_back)."""
        return self.seen.provider_back(name, self.clock.time())

    # --- the outbox (outbox_delivery.py) ---------------------------------------
    async def drain_outbox(self, limit: int = 100, rate_per_s: float = 20.0, ids: list[int] | None = None) -> dict[str, Any]:
        return await self.outbox.drain(limit, rate_per_s, ids)

    async def settle_parked(self, ids: list[int] | None = None, deadline_s: float = 5.0) -> dict[str, Any]:
        return await self.outbox.settle_parked(ids, deadline_s)

    async def replay_outbox(self, ids: list[int], force: bool = False) -> dict[str, Any]:
        return await self.outbox.replay(ids, force)

    # --- the plan, as clients and status see it (planner.py) -----------------------
    def plan_now(self) -> Plan:
        """The plan a request made now would follow."""
        return self.planner.plan()

    def direct_order(self) -> list[str]:
        """The providers a client may send an idempotent call to itself, most preferred first."""
        return self.planner.direct_order()

    def ranked(self, statuses: dict[str, ProviderStatus]) -> CapabilityStatus:
        """The capability's status, its providers ranked."""
        return self.planner.status(statuses, list(self.recent))
