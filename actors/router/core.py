"""Routing one capability's requests, without Ray.

For each request: validate the payload; answer a repeated idempotency key
from its first result; settle what an earlier, crashed attempt left unknown
(unknown_outcomes.py); plan the providers to try (policy.ranking); walk the
plan, asking the gates (policy.gates: the deadline, max attempts, the retry
budget, rate limits, ...) before each attempt, each attempt getting the time
that remains, idempotent methods hedged where configured; when every
provider failed in a way that may pass, try again in rounds. A send whose
outcome is unknown is never sent elsewhere. `invoke` never raises for a
provider's failure or bad input.

Injected: the provider actors are reached through `send` and `resolve`,
time through one `clock` (wall time, monotonic time, sleep), so tests drive
this class with in-process providers and a fake clock. Outbox delivery
(outbox_delivery.py) uses the small public surface marked below.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from actors.clock import SYSTEM_CLOCK, Clock
from actors.durable import StateStore, StoreUnavailable
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
from actors.payloads import METHODS, PayloadError, check_options, validate_payload
from actors.policy.budget import RetryBudget
from actors.policy.gates import GATES, MIN_ATTEMPT_S, Replan, Stop, Turn, Verdict, Wait
from actors.policy.health import HealthSnapshot
from actors.policy.hedging import HedgePolicy, hedge_budget, hedge_delay_s
from actors.policy.ranking import Plan, load_rank_policy
from actors.policy.skips import UNRECORDED, Skip, SkipReason
from actors.router.coalesce import Coalescer, SendMany, batching
from actors.router.ejection import Outliers
from actors.router.idempotency import IdempotencyRecords, Refused, Replayed, fingerprint
from actors.router.outbox_delivery import OutboxDelivery
from actors.router.provider_views import ProviderViews
from actors.router.quotas import quota_hint, quota_plan
from actors.router.request import Request
from actors.router.results import exhausted, failed, store_down, succeeded
from actors.router.unknown_outcomes import Resolve, Settler
from actors.specs import CapabilitySpec, open_spec_store

log = logging.getLogger("aicmo.router")

# An attempt is not started when even the provider's fastest recent answers
# (this quantile of its latency, once this many are known) would not fit in the time left.
FEASIBLE_QUANTILE = 0.1
FEASIBLE_MIN_SAMPLES = 10
# Times a request waits for a throttled provider's reset and plans again.
MAX_RESET_WAITS = 3
# Failures that may pass by the next round: the provider's or its actor's
# trouble, not the request's (invalid, auth, unsupported) nor a throttle
# (whose reset time the plan waits for).
PASSING_KINDS = frozenset({ErrorKind.TRANSIENT, ErrorKind.TIMEOUT, ErrorKind.UNAVAILABLE, ErrorKind.CRASHED,
                           ErrorKind.MALFORMED_RESPONSE})


Send = Callable[[str, str, Any, CallContext], Awaitable[CallReply]]


class RouterCore:
    def __init__(self, spec: CapabilitySpec, send: Send, resolve: Resolve | None = None, *,
                 clock: Clock = SYSTEM_CLOCK, store: StateStore | None = None, send_many: SendMany | None = None,
                 owner: str | None = None, rng: random.Random | None = None):
        self.spec = spec
        self.capability = spec.capability
        self.routing = spec.routing
        self.clock = clock
        self._send = send
        self._coalescer = Coalescer(send_many) if send_many is not None else None
        self._random = rng or random.Random()
        self._store = store
        self._rank = load_rank_policy(spec.routing.ranking)
        self.providers = {p.name: p for p in spec.providers}
        self.seen = ProviderViews(spec.providers)
        self.views, self.latency, self.buckets = self.seen.views, self.seen.latency, self.seen.buckets
        rb = spec.routing.retry_budget
        self.budget = RetryBudget(percent=rb.percent, min_per_s=rb.min_per_s, ttl_s=rb.ttl_s)
        h = spec.routing.hedging
        self.hedge_policy = HedgePolicy(quantile=h.quantile, min_samples=h.min_samples, min_delay_ms=h.min_delay_ms,
                                        max_delay_factor=h.max_delay_factor)
        self.hedges = hedge_budget(h.budget_percent)
        self.recent: deque[Operation] = deque(maxlen=spec.routing.recent_operations)
        self.results = IdempotencyRecords(self.capability, spec.routing.idempotency_window_s, clock, self.store,
                                          owner=owner)
        self.counters: dict[str, int] = {}
        self.settler = Settler(self.capability, self.providers, resolve, self.store, clock, self.count)
        # Called with every finished request's Decision (audit, metrics,
        # hooks): on the request's path, so they must only enqueue.
        self.observers: list[Callable[[Decision], None]] = []
        self.outbox = OutboxDelivery(self)
        self.outliers = Outliers(spec, clock)  # outlier ejection (ejection.py): windows, states, the plan's demotion

    # --- the surface outbox delivery uses (outbox_delivery.Router) ---------------
    def store(self) -> StateStore:
        if self._store is None:
            self._store = open_spec_store(self.spec.state)
        return self._store

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def real_provider_available(self) -> bool:
        """Whether a real provider (not the outbox) would be tried now."""
        plan = self._plan_now()
        return any(not self.providers[n].last_resort for n in plan.order) and not plan.last_resort

    async def route(self, r: Request, recover: bool) -> InvokeResult:
        """Plans and tries the providers; when every attempt failed in a way
        that may pass (a 5xx, a timeout, an actor restarting), tries again in
        rounds with jittered, growing pauses (Envoy's retry back-off), while
        the deadline, `routing.retry_rounds` and the retry budget allow."""
        first = len(r.attempts)
        result = await self._route_once(r, recover)
        while self._worth_another_round(r, result, first):
            pause = self._round_pause(r.retry_rounds)
            if self.clock.monotonic() + pause >= r.deadline - MIN_ATTEMPT_S \
                    or not self.budget.try_withdraw(self.clock.time()):
                break
            r.retry_rounds += 1
            self.count("retry_rounds")
            await self.clock.sleep(pause)
            first = len(r.attempts)
            result = await self._route_once(r, recover=False)
        return result

    async def ask(self, name: str, r: Request) -> Resolution:
        """What provider `name` knows of the request's key (unknown_outcomes.py)."""
        return await self.settler.ask(name, r)

    def finish(self, started: float, result: InvokeResult, r: Request | None = None) -> InvokeResult:
        """The request's result with its elapsed time, handed to the observers
        and the recent-operations log. `started`: on the clock's monotonic time."""
        elapsed = round((self.clock.monotonic() - started) * 1000, 3)
        result = msgspec.structs.replace(result, elapsed_ms=elapsed)
        if result.ok and result.provider in self.providers and self.providers[result.provider].last_resort:
            self.count("queued")
        if self.observers:
            decision = Decision(
                at=self.clock.time(), capability=self.capability, method=result.method, request_id=result.request_id,
                idempotency_key=result.idempotency_key, ok=result.ok, provider=result.provider,
                error_kind=result.error.kind if result.error else None,
                error=result.error.message if result.error else None, dry_run=result.dry_run,
                replayed=result.replayed, outbox_id=result.outbox_id, elapsed_ms=elapsed, attempts=result.attempts,
                candidates=r.candidates if r else [], skipped=r.skipped_details() if r else {},
                draining=r.draining if r else False)
            for observe in self.observers:
                try:
                    observe(decision)
                except Exception:  # noqa: BLE001 - an observer must never break a request
                    log.exception("observer %r failed", observe)
        if self.recent.maxlen:
            self.recent.append(Operation(
                at=self.clock.time(), request_id=result.request_id, method=result.method, ok=result.ok,
                provider=result.provider, attempts=len(result.attempts),
                error_kind=result.error.kind if result.error else None,
                error=result.error.message[:300] if result.error else None,
                dry_run=result.dry_run, elapsed_ms=elapsed))
        return result

    # --- requests ------------------------------------------------------------
    async def invoke(self, method: str, payload: Any, idempotency_key: str | None = None,
                     dry_run: bool | None = None, deadline_s: float | None = None) -> InvokeResult:
        started = self.clock.monotonic()
        request_id = uuid.uuid4().hex
        dry = self.spec.dry_run if dry_run is None else bool(dry_run)
        base = dict(request_id=request_id, idempotency_key=idempotency_key, dry_run=dry,
                    capability=self.capability, method=method)

        spec = METHODS[self.capability].get(method) if isinstance(method, str) else None
        if spec is None:
            known = ", ".join(METHODS[self.capability])
            return self.finish(started, InvokeResult(ok=False, error=ErrorInfo(
                kind=ErrorKind.UNKNOWN_METHOD, message=f"{self.capability} has no method {method!r}; it has: {known}"), **base))
        try:
            payload = validate_payload(spec, payload)
            check_options(idempotency_key, deadline_s)
        except PayloadError as exc:
            return self.finish(started, InvokeResult(ok=False, error=ErrorInfo(kind=ErrorKind.INVALID_REQUEST, message=str(exc)), **base))

        key = idempotency_key
        if key is None and not spec.idempotent and not dry:
            # Every send carries a key, so the journal can tell whether it was
            # delivered; the caller gets it back and may retry with it.
            key = base["idempotency_key"] = f"auto-{request_id}"
        deadline_s = float(deadline_s or self.routing.deadline_s)
        request = Request(spec=spec, payload=payload, key=key, journal=(key is not None and not spec.idempotent and not dry),
                          deadline=started + deadline_s, deadline_s=deadline_s, base=base)
        if key is None or dry:
            return self.finish(started, await self.route(request, recover=False), request)

        print_ = fingerprint(method, payload)
        callers_key = idempotency_key is not None  # a generated key is unknown to anyone else: no claim to race for
        try:
            claim = await self.results.acquire(key, print_, request.deadline, durable=callers_key)
        except StoreUnavailable as exc:
            return self.finish(started, store_down(request, exc), request)
        if isinstance(claim, Replayed):
            return msgspec.structs.replace(claim.result, replayed=True)
        if isinstance(claim, Refused):
            return self.finish(started, failed(request, claim.kind, claim.message), request)
        result = InvokeResult(ok=False, **base)
        try:
            # Only a key with an earlier record can have sends in the journals to settle.
            result = await self.route(request, recover=claim.resumed)
        except StoreUnavailable as exc:
            result = store_down(request, exc)
        finally:
            await self.results.release(key, result, print_, request.deadline, durable=callers_key)
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

    # --- routing -------------------------------------------------------------
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
            settled = await self.settler.recover(r)
            if settled is not None:
                return settled
        if not r.rounds:
            self.budget.deposit(self.clock.time())
            if r.spec.idempotent and self.routing.hedging.enabled:
                self.hedges.deposit(self.clock.time())

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

    async def _attempt_plan(self, r: Request, plan: Plan) -> InvokeResult:
        r.candidates = list(plan.order)
        r.skipped = {s.name: s for s in plan.skipped}
        tried = 0
        budget_spent = False
        used: set[str] = set()
        for name in plan.order:
            if name in used:
                continue
            turn = self._turn(r, plan, name, tried, used)
            verdict = await self._through_gates(turn, r, plan, used)
            if isinstance(verdict, Replan):  # a real provider is free again: plan anew
                r.rounds += 1
                self.count("waited_for_reset")
                await self.clock.sleep(verdict.seconds)
                return await self._route_once(r, recover=False)
            if isinstance(verdict, Stop):
                return failed(r, ErrorKind.DEADLINE_EXCEEDED,
                              f"deadline of {r.deadline_s:g}s passed after {len(r.attempts)} attempt(s)")
            if isinstance(verdict, Skip):
                budget_spent = budget_spent or verdict.reason is SkipReason.RETRY_BUDGET
                if verdict.reason not in UNRECORDED:
                    r.skipped[name] = verdict
                continue

            partner = self._hedge_partner(r, plan.order, name, used) if tried == 0 else None
            outcomes = await self._attempt_or_hedge(r, name, partner, remaining=turn.remaining_s)
            for attempt_name, reply, hedge in outcomes:
                used.add(attempt_name)
                r.attempts.append(Attempt(provider=attempt_name, ok=reply.ok, error_kind=reply.error_kind, error=reply.error,
                                          latency_ms=round(reply.latency_ms, 3), trial=(attempt_name == plan.trial),
                                          hedge=hedge, maybe_delivered=reply.maybe_delivered, injected=reply.injected))
                if reply.error_kind not in (ErrorKind.NOT_SUPPORTED, ErrorKind.CANCELLED):
                    tried += 1
            winner = next(((n, rep) for n, rep, _ in outcomes if rep.ok), None)
            if winner is not None:
                return succeeded(r, winner[0], winner[1].value, last_resort=self.providers[winner[0]].last_resort)
            unjournaled = next((rep for _, rep, _ in outcomes if rep.error_kind is ErrorKind.STORE_UNAVAILABLE), None)
            if unjournaled is not None:  # the store is shared: every other provider would fail alike
                return failed(r, ErrorKind.STORE_UNAVAILABLE, f"{unjournaled.error}. Nothing was sent: retry "
                              "with the same idempotency key once the store is back")
            last_name, last = outcomes[-1][0], outcomes[-1][1]
            if r.journal and last.maybe_delivered:
                settled = await self.settler.settle(r, last_name, last.error)
                if settled is not None:
                    return settled

        now = self.clock.time()
        return exhausted(r, r.skipped, out_of_time=self.clock.monotonic() >= r.deadline - MIN_ATTEMPT_S,
                         budget_spent=budget_spent, hint=quota_hint(self.seen.candidates(now), now))

    def _turn(self, r: Request, plan: Plan, name: str, tried: int, used: set[str]) -> Turn:
        """The snapshot the gates read for provider `name`'s turn, now."""
        provider = self.providers[name]
        now = self.clock.time()
        window = self.latency[name]
        reset_in_s = None
        if provider.last_resort and not r.draining and self.routing.wait_for_throttle and r.rounds < MAX_RESET_WAITS:
            fresh = quota_plan(self.seen.candidates(now), now, self._rank)
            if not any(not self.providers[n].last_resort for n in fresh.order):
                reset_in_s = fresh.wait_s
        bucket = self.buckets.get(name)
        alternative = bucket is not None and any(
            n not in used and not self.providers[n].last_resort for n in plan.order[plan.order.index(name) + 1:])
        return Turn(name=name, last_resort=provider.last_resort, draining=r.draining, tried=tried,
                    max_attempts=self.routing.max_attempts, remaining_s=r.deadline - self.clock.monotonic(),
                    fastest_ms=window.quantile(FEASIBLE_QUANTILE) if len(window) >= FEASIBLE_MIN_SAMPLES else None,
                    now=now, budget=self.budget, bucket=bucket, alternative=alternative,
                    wait_for_throttle=self.routing.wait_for_throttle, waits_left=MAX_RESET_WAITS - r.rounds,
                    reset_in_s=reset_in_s)

    async def _through_gates(self, turn: Turn, r: Request, plan: Plan, used: set[str]) -> Verdict | None:
        """The first verdict of the gates in order, None if every one lets the
        attempt go ahead. A gate that says Wait is asked again after the wait."""
        for gate in GATES:
            verdict = gate(turn)
            while isinstance(verdict, Wait):
                await self.clock.sleep(verdict.seconds)
                verdict = gate(self._turn(r, plan, turn.name, turn.tried, used))
            if verdict is not None:
                return verdict
        return None

    async def _plan(self, r: Request) -> Plan:
        """Plan the attempts; when every real provider is throttled or at its
        rate limit and the deadline allows, wait for the earliest reset."""
        while True:
            plan = self._plan_now()
            real = [n for n in plan.order if not self.providers[n].last_resort]
            wait = plan.wait_s
            if real or wait is None or not self.routing.wait_for_throttle:
                return plan
            if self.clock.monotonic() + wait > r.deadline - MIN_ATTEMPT_S:
                return plan
            await self.clock.sleep(wait)

    # --- health (provider_views.py) ----------------------------------------------
    def health_changed(self, name: str, health: HealthSnapshot) -> None:
        self.seen.health_changed(name, health)

    def provider_back(self, name: str) -> HealthSnapshot | None:
        """A provider actor Ray restarted is back (ProviderViews.provider_back)."""
        return self.seen.provider_back(name, self.clock.time())

    def _plan_now(self) -> Plan:
        now = self.clock.time()
        return self.outliers.plan(self.seen.candidates(now), now, self._rank, planner=quota_plan)

    def _hedge_partner(self, r: Request, order: list[str], first: str, used: set[str]) -> str | None:
        if not (r.spec.idempotent and self.routing.hedging.enabled) or r.draining:
            return None
        for name in order[order.index(first) + 1:]:
            p = self.providers[name]
            if name not in used and not p.last_resort and (name not in self.buckets or self.buckets[name].wait_s(self.clock.time()) == 0):
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
        if done or not self.hedges.try_withdraw(self.clock.time()):
            return [(name, await first, False)]
        if partner in self.buckets and not self.buckets[partner].try_take(self.clock.time()):
            return [(name, await first, False)]
        self.count("hedges")
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
        remaining = max(MIN_ATTEMPT_S, r.deadline - self.clock.monotonic())
        ctx = r.context(min(self.providers[name].attempt_timeout_s, remaining))
        started, sent_at = self.clock.monotonic(), self.clock.time()
        send = self._coalescer.send if self._coalescer is not None and batching.get() else self._send
        try:
            reply = await send(name, r.spec.name, r.payload, ctx)
        except ActorUnreachable as exc:
            view.unreachable(sent_at, self.clock.time(), self.routing.unreachable_backoff_s)
            return CallReply(ok=False, error_kind=exc.kind, error=exc.message, maybe_delivered=exc.maybe_delivered,
                             latency_ms=(self.clock.monotonic() - started) * 1000, health=view.health)
        except ProviderError as exc:
            return CallReply(ok=False, error_kind=exc.kind, error=exc.message, maybe_delivered=exc.maybe_delivered,
                             latency_ms=(self.clock.monotonic() - started) * 1000, health=view.health)
        view.unreachable_until = None
        self.seen.learn(view, reply.health)
        self.seen.quotas.learn(name, reply)
        self.outliers.observe(name, reply, r.base["dry_run"])
        if reply.ok and not reply.replayed and not r.base["dry_run"]:
            # What this router waits for: the provider's time plus the hop.
            self.latency[name].add((self.clock.monotonic() - started) * 1000)
        return reply

    # --- the outbox (outbox_delivery.py) ---------------------------------------
    async def drain_outbox(self, limit: int = 100, rate_per_s: float = 20.0, ids: list[int] | None = None) -> dict[str, Any]:
        return await self.outbox.drain(limit, rate_per_s, ids)

    async def settle_parked(self, ids: list[int] | None = None, deadline_s: float = 5.0) -> dict[str, Any]:
        return await self.outbox.settle_parked(ids, deadline_s)

    async def replay_outbox(self, ids: list[int], force: bool = False) -> dict[str, Any]:
        return await self.outbox.replay(ids, force)

    def direct_order(self) -> list[str]:
        """The providers a client may send an idempotent call to itself, most
        preferred first: those the next request would try first, leaving to
        the router any half-open trial, provider cooling down, provider under
        our rate limit (its bucket is here) and the last resort."""
        plan = self._plan_now()
        deferred = {d.name for d in plan.deferred}
        return [n for n in plan.order if n != plan.trial and n not in deferred and n not in self.buckets
                and not self.providers[n].last_resort]

    def ranked(self, statuses: dict[str, ProviderStatus]) -> CapabilityStatus:
        plan = self._plan_now()
        order = [*plan.order, *(s.name for s in plan.skipped if s.name not in plan.order)]
        return self.outliers.annotate(CapabilityStatus(
            capability=self.capability,
            providers=[statuses[name] for name in order if name in statuses],
            recent_operations=list(self.recent),
            skipped={s.name: s.detail for s in [*plan.skipped, *plan.deferred]},
        ))
