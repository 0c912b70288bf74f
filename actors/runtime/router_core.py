"""Routing one capability's requests, without Ray.

For each request: validate the payload; answer a repeated idempotency key
from its first result; settle what an earlier, crashed attempt left unknown;
plan the providers to try (policy.ranking); try them in order within the
request's deadline, each attempt getting the time that remains, fallbacks
capped by the retry budget, idempotent methods hedged where configured.
A send whose outcome is unknown is never sent elsewhere: the provider is
asked what happened, and if it cannot tell, the request is parked in the
outbox for an operator. `invoke` never raises for a provider's failure or
bad input.

The provider actors are reached through two injected functions, `send` and
`resolve`, so tests drive this class with in-process providers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from actors.durable import JournalEntry, StateStore, StoreUnavailable
from actors.durable.retry import within
from actors.errors import ActorUnreachable, ErrorKind, ProviderError
from actors.messages import (
    Attempt,
    CallContext,
    CallReply,
    CapabilityStatus,
    Decision,
    ErrorInfo,
    InvokeResult,
    Operation,
    ProviderStatus,
    Resolution,
)
from actors.payloads import METHODS, PayloadError, validate_payload
from actors.policy.budget import RetryBudget
from actors.policy.health import HealthSnapshot
from actors.policy.hedging import HedgePolicy, LatencyWindow, hedge_budget, hedge_delay_s
from actors.policy.ranking import Candidate, load_rank_policy, plan_attempts
from actors.policy.ratelimit import TokenBucket
from actors.policy.retry_after import retry_hint
from actors.runtime.coalesce import Coalescer, PerTurn, SendMany, batching
from actors.runtime.idempotency import IdempotencyRecords, Refused, Replayed, fingerprint
from actors.runtime.outbox_delivery import OutboxDelivery
from actors.runtime.request import Request
from actors.runtime.specs import CapabilitySpec, open_spec_store

log = logging.getLogger("aicmo.router")

# Below this much time left, no attempt can finish: answer deadline_exceeded.
MIN_ATTEMPT_S = 0.005
# An attempt is not started when even the provider's fastest recent answers
# (this quantile of its latency) would not fit in the time left.
FEASIBLE_QUANTILE = 0.1
# How often a router asks a restarting provider actor what happened to a send.
RESOLVE_RETRY_S = 0.25
# Failures that may pass by the next round: the provider's or its actor's
# trouble, not the request's (invalid, auth, unsupported) nor a throttle
# (whose reset time the plan waits for).
PASSING_KINDS = frozenset({ErrorKind.TRANSIENT, ErrorKind.TIMEOUT, ErrorKind.UNAVAILABLE, ErrorKind.CRASHED,
                           ErrorKind.MALFORMED_RESPONSE})


Send = Callable[[str, str, Any, CallContext], Awaitable[CallReply]]
Resolve = Callable[[str, str, Any, CallContext], Awaitable[Resolution]]


class _View(msgspec.Struct):
    """The router's picture of one provider: the health the provider last
    reported, plus what only the router can see (the actor's reachability)."""

    health: HealthSnapshot = HealthSnapshot()
    unreachable_until: float | None = None
    trial_in_flight: bool = False


MAX_KEY_LENGTH = 256


def check_options(idempotency_key: Any, deadline_s: Any) -> None:
    """The options of `invoke`, refused with a PayloadError that says why."""
    if idempotency_key is not None:
        if not (isinstance(idempotency_key, str) and idempotency_key.strip()):
            raise PayloadError("idempotency_key must be a non-empty string")
        if len(idempotency_key) > MAX_KEY_LENGTH:
            raise PayloadError(f"idempotency_key is {len(idempotency_key)} characters long; at most {MAX_KEY_LENGTH}")
        try:
            idempotency_key.encode()
        except UnicodeEncodeError:
            raise PayloadError("idempotency_key is not valid Unicode (a lone surrogate)") from None
    if deadline_s is not None and (isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float))
                                   or not 0 < deadline_s < float("inf")):
        raise PayloadError(f"deadline_s must be a positive number of seconds, got {str(deadline_s)[:40]!r}")


class RouterCore:
    def __init__(self, spec: CapabilitySpec, send: Send, resolve: Resolve | None = None, *,
                 clock: Callable[[], float] = time.time, store: StateStore | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, send_many: SendMany | None = None,
                 owner: str | None = None, rng: random.Random | None = None):
        self.spec = spec
        self.capability = spec.capability
        self.routing = spec.routing
        self._send = send
        self._coalescer = Coalescer(send_many) if send_many is not None else None
        self._resolve = resolve
        self._clock = clock
        self._sleep = sleep
        self._random = rng or random.Random()
        self._store = store
        self._rank = load_rank_policy(spec.routing.ranking)
        self.providers = {p.name: p for p in spec.providers}
        self.views: dict[str, _View] = {p.name: _View() for p in spec.providers}
        self.latency: dict[str, LatencyWindow] = {p.name: LatencyWindow() for p in spec.providers}
        self.buckets: dict[str, TokenBucket] = {
            p.name: TokenBucket(p.rate_limit_per_s, p.rate_limit_burst or max(1.0, p.rate_limit_per_s))
            for p in spec.providers if p.rate_limit_per_s}
        rb = spec.routing.retry_budget
        self.budget = RetryBudget(percent=rb.percent, min_per_s=rb.min_per_s, ttl_s=rb.ttl_s)
        h = spec.routing.hedging
        self.hedge_policy = HedgePolicy(quantile=h.quantile, min_samples=h.min_samples, min_delay_ms=h.min_delay_ms,
                                        max_delay_factor=h.max_delay_factor)
        self.hedges = hedge_budget(h.budget_percent)
        self.recent: deque[Operation] = deque(maxlen=spec.routing.recent_operations)
        self.results = IdempotencyRecords(self.capability, spec.routing.idempotency_window_s, clock, self.store,
                                          owner=owner, sleep=sleep)
        self._journal_reads: PerTurn[str, list[JournalEntry]] = PerTurn(self._read_journals)
        self.counters: dict[str, int] = {}
        # Called with every finished request's Decision (audit, metrics,
        # hooks): on the request's path, so they must only enqueue.
        self.observers: list[Callable[[Decision], None]] = []
        self.outbox = OutboxDelivery(self)

    def store(self) -> StateStore:
        if self._store is None:
            self._store = open_spec_store(self.spec.state)
        return self._store

    async def _read_journals(self, keys: list[str]) -> list[list[JournalEntry]]:
        found = await self.store().journal_find_many(self.capability, keys)
        return [found.get(key, []) for key in keys]

    def _store_down(self, r: Request, exc: StoreUnavailable) -> InvokeResult:
        return self._failed(r, ErrorKind.STORE_UNAVAILABLE,
                            f"{exc}. Nothing was sent: without the store no send can be kept to once. Retry with the "
                            "same idempotency key once it is back")

    # --- requests ------------------------------------------------------------
    async def invoke(self, method: str, payload: Any, idempotency_key: str | None = None,
                     dry_run: bool | None = None, deadline_s: float | None = None) -> InvokeResult:
        started = time.monotonic()
        request_id = uuid.uuid4().hex
        dry = self.spec.dry_run if dry_run is None else bool(dry_run)
        base = dict(request_id=request_id, idempotency_key=idempotency_key, dry_run=dry,
                    capability=self.capability, method=method)

        spec = METHODS[self.capability].get(method) if isinstance(method, str) else None
        if spec is None:
            known = ", ".join(METHODS[self.capability])
            return self._done(started, InvokeResult(ok=False, error=ErrorInfo(
                kind=ErrorKind.UNKNOWN_METHOD, message=f"{self.capability} has no method {method!r}; it has: {known}"), **base))
        try:
            payload = validate_payload(spec, payload)
            check_options(idempotency_key, deadline_s)
        except PayloadError as exc:
            return self._done(started, InvokeResult(ok=False, error=ErrorInfo(kind=ErrorKind.INVALID_REQUEST, message=str(exc)), **base))

        key = idempotency_key
        if key is None and not spec.idempotent and not dry:
            # Every send carries a key, so the journal can tell whether it was
            # delivered; the caller gets it back and may retry with it.
            key = base["idempotency_key"] = f"auto-{request_id}"
        deadline_s = float(deadline_s or self.routing.deadline_s)
        request = Request(spec=spec, payload=payload, key=key, journal=(key is not None and not spec.idempotent and not dry),
                          deadline=started + deadline_s, deadline_s=deadline_s, base=base)
        if key is None or dry:
            return self._done(started, await self._route(request, recover=False), request)

        print_ = fingerprint(method, payload)
        callers_key = idempotency_key is not None  # a generated key is unknown to anyone else: no claim to race for
        try:
            claim = await self.results.acquire(key, print_, request.deadline, durable=callers_key)
        except StoreUnavailable as exc:
            return self._done(started, self._store_down(request, exc), request)
        if isinstance(claim, Replayed):
            return msgspec.structs.replace(claim.result, replayed=True)
        if isinstance(claim, Refused):
            return self._done(started, self._failed(request, claim.kind, claim.message), request)
        result = InvokeResult(ok=False, **base)
        try:
            # Only a key with an earlier record can have sends in the journals to settle.
            result = await self._route(request, recover=claim.resumed)
        except StoreUnavailable as exc:
            result = self._store_down(request, exc)
        finally:
            await self.results.release(key, result, print_, request.deadline, durable=callers_key)
        return self._done(started, result, request)

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

    # --- routing -------------------------------------------------------------
    async def _route(self, r: Request, recover: bool) -> InvokeResult:
        """Plans and tries the providers; when every attempt failed in a way
        that may pass (a 5xx, a timeout, an actor restarting), tries again in
        rounds with jittered, growing pauses (Envoy's retry back-off), while
        the deadline, `routing.retry_rounds` and the retry budget allow."""
        first = len(r.attempts)
        result = await self._route_once(r, recover)
        while self._worth_another_round(r, result, first):
            pause = self._round_pause(r.retry_rounds)
            if time.monotonic() + pause >= r.deadline - MIN_ATTEMPT_S or not self.budget.try_withdraw(self._clock()):
                break
            r.retry_rounds += 1
            self._count("retry_rounds")
            await self._sleep(pause)
            first = len(r.attempts)
            result = await self._route_once(r, recover=False)
        return result

    def _worth_another_round(self, r: Request, result: InvokeResult, first: int) -> bool:
        if result.ok or result.outbox_id is not None or r.draining or r.retry_rounds >= self.routing.retry_rounds:
            return False
        if result.error is None or result.error.kind is not ErrorKind.ALL_PROVIDERS_FAILED:
            return False
        tried = [a for a in r.attempts[first:] if a.error_kind is not ErrorKind.CANCELLED]
        return bool(tried) and all(a.error_kind in PASSING_KINDS for a in tried)

    def _round_pause(self, done: int) -> float:
        """Full jitter: uniform up to base * 2^rounds, capped."""
        ceiling = min(self.routing.retry_backoff_max_ms, self.routing.retry_backoff_ms * 2 ** done) / 1000
        return self._random.uniform(0, ceiling)

    async def _route_once(self, r: Request, recover: bool) -> InvokeResult:
        if r.journal and recover:
            settled = await self._recover(r)
            if settled is not None:
                return settled
        if not r.rounds:
            self.budget.deposit(self._clock())
            if r.spec.idempotent and self.routing.hedging.enabled:
                self.hedges.deposit(self._clock())

        plan = await self._plan(r)
        # Claim the half-open trial now, before anything awaits: two requests
        # planned together must not both try a provider that is cooling down.
        if plan.trial is not None:
            self.views[plan.trial].trial_in_flight = True
        try:
            return await self._attempt_plan(r, plan)
        finally:
            if plan.trial is not None:
                self.views[plan.trial].trial_in_flight = False

    async def _attempt_plan(self, r: Request, plan: Any) -> InvokeResult:
        r.candidates = list(plan.order)
        r.skipped = skipped = {s.name: s.reason for s in plan.skipped}
        r.deferred = {d.name: d.reason for d in plan.deferred}
        tried = 0
        budget_spent = False
        used: set[str] = set()
        for name in plan.order:
            if name in used:
                continue
            provider = self.providers[name]
            if provider.last_resort and r.draining:
                continue
            if provider.last_resort and await self._waited_for_reset(r):
                return await self._route_once(r, recover=False)  # a real provider is free again: plan anew
            if tried >= self.routing.max_attempts and not provider.last_resort:
                continue
            remaining = r.deadline - time.monotonic()
            if remaining < MIN_ATTEMPT_S:
                return self._failed(r, ErrorKind.DEADLINE_EXCEEDED,
                                    f"deadline of {r.deadline_s:g}s passed after {len(r.attempts)} attempt(s)")
            fastest = self.latency[name].quantile(FEASIBLE_QUANTILE) if len(self.latency[name]) >= 10 else None
            if fastest is not None and remaining * 1000 < fastest and not provider.last_resort:
                skipped[name] = f"cannot answer in the {remaining * 1000:.0f} ms left (its fastest recent: {fastest:.0f} ms)"
                continue
            if tried >= 1 and not provider.last_resort and not r.draining and not self.budget.try_withdraw(self._clock()):
                budget_spent = True
                skipped[name] = "retry budget spent: fallbacks are capped to a share of recent traffic"
                continue
            if name in self.buckets:
                rest = plan.order[plan.order.index(name) + 1:]
                alternative = any(n not in used and not self.providers[n].last_resort for n in rest)
                if not await self._take_slot(name, r, wait=not alternative):
                    skipped[name] = "at its configured rate limit"
                    continue

            partner = self._hedge_partner(r, plan.order, name, used) if tried == 0 else None
            outcomes = await self._attempt_or_hedge(r, name, partner, remaining=remaining)
            for attempt_name, reply, hedge in outcomes:
                used.add(attempt_name)
                r.attempts.append(Attempt(provider=attempt_name, ok=reply.ok, error_kind=reply.error_kind, error=reply.error,
                                          latency_ms=round(reply.latency_ms, 3), trial=(attempt_name == plan.trial),
                                          hedge=hedge, maybe_delivered=reply.maybe_delivered))
                if reply.error_kind not in (ErrorKind.NOT_SUPPORTED, ErrorKind.CANCELLED):
                    tried += 1
            winner = next(((n, rep) for n, rep, _ in outcomes if rep.ok), None)
            if winner is not None:
                return self._succeeded(r, winner[0], winner[1].value)
            unjournaled = next((rep for _, rep, _ in outcomes if rep.error_kind is ErrorKind.STORE_UNAVAILABLE), None)
            if unjournaled is not None:  # the store is shared: every other provider would fail alike
                return self._failed(r, ErrorKind.STORE_UNAVAILABLE, f"{unjournaled.error}. Nothing was sent: retry "
                                    "with the same idempotency key once the store is back")
            last_name, last = outcomes[-1][0], outcomes[-1][1]
            if r.journal and last.maybe_delivered:
                settled = await self._settle_unknown(r, last_name, last.error)
                if settled is not None:
                    return settled

        return self._exhausted(r, skipped, budget_spent)

    async def _plan(self, r: Request) -> Any:
        """Plan the attempts; when every real provider is throttled or at its
        rate limit and the deadline allows, wait for the earliest reset."""
        while True:
            now = self._clock()
            plan = plan_attempts(self._candidates(now), now, self._rank)
            real = [n for n in plan.order if not self.providers[n].last_resort]
            wait = plan.wait_s
            if real or wait is None or not self.routing.wait_for_throttle:
                return plan
            if time.monotonic() + wait > r.deadline - MIN_ATTEMPT_S:
                return plan
            await self._sleep(wait)

    async def _waited_for_reset(self, r: Request, max_rounds: int = 3) -> bool:
        """Before a request is queued: if every real provider is only
        throttled (or at its rate limit) and the earliest reset comes before
        the deadline, wait for it rather than queue or fail."""
        if not self.routing.wait_for_throttle or r.rounds >= max_rounds:
            return False
        now = self._clock()
        plan = plan_attempts(self._candidates(now), now, self._rank)
        if any(not self.providers[n].last_resort for n in plan.order) or plan.wait_s is None:
            return False
        if time.monotonic() + plan.wait_s > r.deadline - MIN_ATTEMPT_S:
            return False
        r.rounds += 1
        self._count("waited_for_reset")
        await self._sleep(plan.wait_s)
        return True

    async def _take_slot(self, name: str, r: Request, wait: bool) -> bool:
        """A slot of the provider's configured rate. With no other real
        provider left to try, wait for one if the deadline allows."""
        bucket = self.buckets[name]
        while not bucket.try_take(self._clock()):
            wait_s = bucket.wait_s(self._clock())
            if not (wait and self.routing.wait_for_throttle) or time.monotonic() + wait_s > r.deadline - MIN_ATTEMPT_S:
                return False
            await self._sleep(wait_s)
        return True

    def _hedge_partner(self, r: Request, order: list[str], first: str, used: set[str]) -> str | None:
        if not (r.spec.idempotent and self.routing.hedging.enabled) or r.draining:
            return None
        for name in order[order.index(first) + 1:]:
            p = self.providers[name]
            if name not in used and not p.last_resort and (name not in self.buckets or self.buckets[name].wait_s(self._clock()) == 0):
                return name
        return None

    async def _attempt_or_hedge(self, r: Request, name: str, partner: str | None,
                                remaining: float) -> list[tuple[str, CallReply, bool]]:
        """One attempt; or, for a hedged method, a backup at `partner` once
        the first has taken longer than its recent p95. First success wins."""
        first = asyncio.ensure_future(self._attempt(name, r))
        delay = hedge_delay_s(self.latency[name], self.hedge_policy) if partner is not None else None
        if delay is None or delay >= remaining:
            return [(name, await first, False)]
        done, _ = await asyncio.wait({first}, timeout=delay)
        if done or not self.hedges.try_withdraw(self._clock()):
            return [(name, await first, False)]
        if partner in self.buckets and not self.buckets[partner].try_take(self._clock()):
            return [(name, await first, False)]
        self._count("hedges")
        second = asyncio.ensure_future(self._attempt(partner, r))
        pending = {first: (name, False), second: (partner, True)}
        out: list[tuple[str, CallReply, bool]] = []
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                n, hedge = pending.pop(task)
                out.append((n, task.result(), hedge))
            if any(rep.ok for _, rep, _ in out):
                for task, (n, hedge) in pending.items():
                    task.cancel()
                    out.append((n, CallReply(ok=False, error_kind=ErrorKind.CANCELLED,
                                             error=f"{n}: cancelled, another attempt answered first"), hedge))
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
                break
        return out

    async def _attempt(self, name: str, r: Request) -> CallReply:
        view = self.views[name]
        remaining = max(MIN_ATTEMPT_S, r.deadline - time.monotonic())
        ctx = self._ctx(r, min(self.providers[name].attempt_timeout_s, remaining))
        started = time.monotonic()
        send = self._coalescer.send if self._coalescer is not None and batching.get() else self._send
        try:
            reply = await send(name, r.spec.name, r.payload, ctx)
        except ActorUnreachable as exc:
            view.unreachable_until = self._clock() + self.routing.unreachable_backoff_s
            return CallReply(ok=False, error_kind=exc.kind, error=exc.message, maybe_delivered=exc.maybe_delivered,
                             latency_ms=(time.monotonic() - started) * 1000, health=view.health)
        except ProviderError as exc:
            return CallReply(ok=False, error_kind=exc.kind, error=exc.message, maybe_delivered=exc.maybe_delivered,
                             latency_ms=(time.monotonic() - started) * 1000, health=view.health)
        view.unreachable_until = None
        self._learn(view, reply.health)
        if reply.ok and not reply.replayed and not r.base["dry_run"]:
            # What this router waits for: the provider's time plus the hop.
            self.latency[name].add((time.monotonic() - started) * 1000)
        return reply

    def _ctx(self, r: Request, timeout_s: float) -> CallContext:
        return CallContext(request_id=r.base["request_id"], method=r.spec.name, idempotency_key=r.key,
                           dry_run=r.base["dry_run"], timeout_s=timeout_s, journal=r.journal)

    # --- unknown outcomes ------------------------------------------------------
    async def _recover(self, r: Request) -> InvokeResult | None:
        """Settle what earlier attempts with this key left in the providers'
        journals (the router that made them may have crashed): a delivery is
        returned, a send in doubt is asked about, never sent elsewhere."""
        assert r.key is not None
        key = r.key
        found = await within(r.deadline, lambda: self._journal_reads(key), sleep=self._sleep)
        entries = [e for e in found if e.provider in self.providers]
        delivered = [e for e in entries if e.state == "delivered"]
        # A real delivery wins; the outbox's own record that it queued the
        # request counts only when we are not the ones delivering it from there.
        for e in sorted(delivered, key=lambda e: self.providers[e.provider].last_resort):
            if not (self.providers[e.provider].last_resort and r.draining):
                return self._succeeded(r, e.provider, e.value, replayed=True)
        for e in entries:
            if e.state in ("started", "unknown") and not self.providers[e.provider].last_resort:
                settled = await self._settle_unknown(r, e.provider, e.error)
                if settled is not None:
                    return settled
        return None

    async def _settle_unknown(self, r: Request, name: str, error: str | None) -> InvokeResult | None:
        """After a send whose outcome we could not see: ask the provider (its
        journal, then the provider's own records) until the deadline. Returns
        the result if it was delivered or stays unknown (parked); None if it
        certainly was not, so falling back is safe."""
        resolution = await self._ask(name, r)
        self._count(f"resolved_{resolution.state}")
        if resolution.state == "delivered":
            return self._succeeded(r, name, resolution.value, replayed=True)
        if resolution.state == "not_delivered":
            return None
        why = resolution.error or error or "no answer"
        try:
            item = await within(max(r.deadline, time.monotonic() + 1.0), lambda: self._park(r, name, why),
                                sleep=self._sleep)
        except StoreUnavailable as exc:
            return self._failed(r, ErrorKind.OUTCOME_UNKNOWN,
                                f"{name} may or may not have delivered this ({why}); it was not sent anywhere else, "
                                f"and could not be parked in the outbox ({exc}). A retry with its idempotency key "
                                "settles it from the provider's journal, never sending it twice")
        # Cut off by the deadline, the request ends as deadline_exceeded; either
        # way it was not sent elsewhere, and a retry with its key sends nothing.
        kind = ErrorKind.DEADLINE_EXCEEDED if time.monotonic() >= r.deadline - MIN_ATTEMPT_S else ErrorKind.OUTCOME_UNKNOWN
        result = self._failed(r, kind, f"{name} may or may not have delivered this ({why}); it was not sent anywhere "
                                       f"else. Parked as outbox item {item}: see `aicmo-gateway outbox list`")
        return msgspec.structs.replace(result, outbox_id=item)

    async def _ask(self, name: str, r: Request) -> Resolution:
        if self._resolve is None:
            return Resolution(state="unknown", error="this router cannot ask providers")
        while True:
            remaining = r.deadline - time.monotonic()
            if remaining < MIN_ATTEMPT_S:
                return Resolution(state="unknown", error="the deadline passed before the provider could be asked")
            try:
                return await self._resolve(name, r.spec.name, r.payload, self._ctx(r, remaining))
            except (ActorUnreachable, ProviderError) as exc:
                # A restarting actor comes back under its name: ask again.
                await self._sleep(min(RESOLVE_RETRY_S, max(0.0, remaining - MIN_ATTEMPT_S)))
                last = getattr(exc, "message", str(exc))
                if r.deadline - time.monotonic() < MIN_ATTEMPT_S:
                    return Resolution(state="unknown", error=f"the provider actor did not answer: {last}")

    async def _park(self, r: Request, name: str, why: str) -> int:
        assert r.key is not None
        store = self.store()
        now = self._clock()
        live = await store.outbox_find(self.capability, r.key)
        if live is not None and live.state in ("pending", "parked"):
            await store.outbox_update(live.id, now, state="parked", reason="outcome_unknown", provider=name, error=why)
            return live.id
        item = await store.outbox_add(capability=self.capability, method=r.spec.name, payload=msgspec.to_builtins(r.payload),
                                idempotency_key=r.key, request_id=r.base["request_id"], reason="outcome_unknown",
                                now=now, provider=name, error=why)
        return item.id

    # --- the outbox (outbox_delivery.py) ---------------------------------------
    def real_provider_available(self) -> bool:
        return self.outbox.real_provider_available()

    async def drain_outbox(self, limit: int = 100, rate_per_s: float = 20.0, ids: list[int] | None = None) -> dict[str, Any]:
        return await self.outbox.drain(limit, rate_per_s, ids)

    async def settle_parked(self, ids: list[int] | None = None, deadline_s: float = 5.0) -> dict[str, Any]:
        return await self.outbox.settle_parked(ids, deadline_s)

    async def replay_outbox(self, ids: list[int], force: bool = False) -> dict[str, Any]:
        return await self.outbox.replay(ids, force)

    # --- results ---------------------------------------------------------------
    def _succeeded(self, r: Request, name: str, value: Any, replayed: bool = False) -> InvokeResult:
        outbox_id = None
        if self.providers[name].last_resort:
            self._count("queued")
            outbox_id = value.get("outbox_id") if isinstance(value, dict) else None
        return InvokeResult(ok=True, value=value, provider=name, attempts=r.attempts, replayed=replayed,
                            outbox_id=outbox_id, **r.base)

    def _failed(self, r: Request, kind: ErrorKind, message: str, retry_after_s: float | None = None) -> InvokeResult:
        return InvokeResult(ok=False, attempts=r.attempts, error=ErrorInfo(
            kind=kind, message=message, retry_after_s=None if retry_after_s is None else round(retry_after_s, 3)), **r.base)

    def _exhausted(self, r: Request, skipped: dict[str, str], budget_spent: bool) -> InvokeResult:
        attempts = r.attempts
        real = [a for a in attempts if a.error_kind not in (ErrorKind.NOT_SUPPORTED, ErrorKind.CANCELLED)]
        hint = retry_hint(self._candidates(self._clock()), self._clock())
        if not real:
            why = "; ".join(f"{a.provider}: {a.error}" for a in attempts) or \
                "; ".join(f"{n}: {reason}" for n, reason in skipped.items()) or "no provider configured"
            if time.monotonic() >= r.deadline - MIN_ATTEMPT_S or any("cannot answer in the" in v for v in skipped.values()):
                return self._failed(r, ErrorKind.DEADLINE_EXCEEDED, f"no attempt can finish within the deadline of {r.deadline_s:g}s ({why})")
            if hint.throttled:
                return self._failed(r, ErrorKind.RATE_LIMITED, f"every provider is throttled now ({why})", hint.after_s)
            return self._failed(r, ErrorKind.NO_AVAILABLE_PROVIDER, f"no provider can serve this request now ({why})",
                                hint.after_s)
        last = real[-1]
        summary = "; ".join(f"{a.provider}: {a.error_kind}" for a in real)
        if time.monotonic() >= r.deadline - MIN_ATTEMPT_S and last.error_kind is ErrorKind.TIMEOUT:
            return self._failed(r, ErrorKind.DEADLINE_EXCEEDED, f"deadline of {r.deadline_s:g}s passed after {len(real)} attempt(s) ({summary})")
        if budget_spent:
            return self._failed(r, ErrorKind.RETRY_BUDGET_EXHAUSTED,
                                f"{len(real)} attempt(s) failed ({summary}) and the retry budget allows no more fallbacks now; "
                                f"last error: {last.error}", hint.after_s)
        if hint.throttled and all(a.error_kind is ErrorKind.RATE_LIMITED for a in real):
            return self._failed(r, ErrorKind.RATE_LIMITED, f"every provider is throttled now ({summary}); last error: "
                                                           f"{last.error}", hint.after_s)
        rounds = f" in {r.retry_rounds + 1} rounds" if r.retry_rounds else ""
        return self._failed(r, ErrorKind.ALL_PROVIDERS_FAILED,
                            f"{len(real)} attempt(s) failed{rounds} ({summary}); last error: {last.error}")

    # --- health ----------------------------------------------------------------
    def _learn(self, view: _View, health: HealthSnapshot) -> None:
        # Replies can arrive out of order; keep the newest picture.
        if (health.last_checked or 0) >= (view.health.last_checked or 0):
            view.health = health

    def health_changed(self, name: str, health: HealthSnapshot) -> None:
        if name in self.views:
            self._learn(self.views[name], health)

    def provider_back(self, name: str) -> HealthSnapshot | None:
        """A provider actor that Ray restarted says it is back: it is tried
        again at once rather than after `unreachable_backoff_s`. Returns the
        health this router last had of it (its process died, not the provider
        it talks to), for the new process to start from; None if none."""
        view = self.views.get(name)
        if view is None:
            return None
        view.unreachable_until = None
        return view.health if view.health.total_calls else None

    def _candidates(self, now: float) -> list[Candidate]:
        return [
            Candidate(name=name, index=self.providers[name].index, health=v.health, unreachable_until=v.unreachable_until,
                      trial_in_flight=v.trial_in_flight, last_resort=self.providers[name].last_resort,
                      rate_wait_s=self.buckets[name].wait_s(now) if name in self.buckets else 0.0)
            for name, v in self.views.items()
        ]

    def direct_order(self) -> list[str]:
        """The providers a client may send an idempotent call to itself, most
        preferred first: those the next request would try first, leaving to
        the router any half-open trial, provider cooling down, provider under
        our rate limit (its bucket is here) and the last resort."""
        now = self._clock()
        plan = plan_attempts(self._candidates(now), now, self._rank)
        deferred = {d.name for d in plan.deferred}
        return [n for n in plan.order if n != plan.trial and n not in deferred and n not in self.buckets
                and not self.providers[n].last_resort]

    def ranked(self, statuses: dict[str, ProviderStatus]) -> CapabilityStatus:
        now = self._clock()
        plan = plan_attempts(self._candidates(now), now, self._rank)
        order = [*plan.order, *(s.name for s in plan.skipped if s.name not in plan.order)]
        return CapabilityStatus(
            capability=self.capability,
            providers=[statuses[name] for name in order if name in statuses],
            recent_operations=list(self.recent),
            skipped={s.name: s.reason for s in [*plan.skipped, *plan.deferred]},
        )

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # --- the recent-operations log -------------------------------------------
    def _done(self, started: float, result: InvokeResult, r: Request | None = None) -> InvokeResult:
        elapsed = round((time.monotonic() - started) * 1000, 3)
        result = msgspec.structs.replace(result, elapsed_ms=elapsed)
        if self.observers:
            decision = Decision(
                at=self._clock(), capability=self.capability, method=result.method, request_id=result.request_id,
                idempotency_key=result.idempotency_key, ok=result.ok, provider=result.provider,
                error_kind=result.error.kind if result.error else None,
                error=result.error.message if result.error else None, dry_run=result.dry_run,
                replayed=result.replayed, outbox_id=result.outbox_id, elapsed_ms=elapsed, attempts=result.attempts,
                candidates=r.candidates if r else [], skipped=r.skipped if r else {}, draining=r.draining if r else False)
            for observe in self.observers:
                try:
                    observe(decision)
                except Exception:  # noqa: BLE001 - an observer must never break a request
                    log.exception("observer %r failed", observe)
        if self.recent.maxlen:
            self.recent.append(Operation(
                at=self._clock(), request_id=result.request_id, method=result.method, ok=result.ok,
                provider=result.provider, attempts=len(result.attempts),
                error_kind=result.error.kind if result.error else None,
                error=result.error.message[:300] if result.error else None,
                dry_run=result.dry_run, elapsed_ms=elapsed))
        return result
