"""One round of a request: its plan walked, provider by provider.

`round` settles first what an earlier, crashed attempt with the request's
key left unknown (unknown_outcomes.py); then it asks the planner for the
plan (planner.py, over policy/planning.py) and walks it: before each
provider's turn it asks the gates (policy/gates.py: the deadline, max
attempts, the retry budget, rate limits, ...), and acts on their verdict:
skip it, stop, wait, or plan anew; otherwise it sends the attempt with the
time that remains, hedged where policy/hedging.py says so. A send whose
outcome is unknown is never sent elsewhere: it is settled with the provider.
An attempt the provider actor refused at its rate limit (it holds the limit
for every router: actors/provider/pacing.py) is a skip, not an attempt: it
sent nothing, and the plan leaves the provider out until its next slot.

Nothing here decides: it reads the snapshots the policies need (the plan's
input, each turn, the hedge's), asks, sleeps on the clock and sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from actors.clock import Clock
from actors.errors import ActorUnreachable, ErrorKind, ProviderError
from actors.messages import Attempt, CallContext, CallReply, InvokeResult
from actors.policy.budget import RetryBudget
from actors.policy.gates import (
    GATES,
    MAX_RESET_WAITS,
    MIN_ATTEMPT_S,
    Stop,
    Turn,
    Verdict,
    Wait,
    fastest_ms,
    wait_for_reset,
)
from actors.policy.hedging import HedgePolicy, hedge_after_s, hedge_budget, hedge_partner, may_send_hedge
from actors.policy.planning import Plan
from actors.policy.skips import UNRECORDED, Skip, SkipReason
from actors.router.coalesce import Coalescer, batching
from actors.router.ejection import Outliers
from actors.router.planner import Planner
from actors.router.provider_views import ProviderViews
from actors.router.request import Request
from actors.router.results import exhausted, failed, succeeded
from actors.router.unknown_outcomes import Settler
from actors.specs import CapabilitySpec
from actors.telemetry.spans import NO_TRACING

__all__ = ["PACE_WITH_ALTERNATIVE_S", "Attempts", "Send", "paced_out"]

Send = Callable[[str, str, Any, CallContext], Awaitable[CallReply]]

# How long a provider actor may hold an attempt for a slot of its rate limit when
# another provider is left to try: a moment (this router's own bucket already
# spaced its sends), not a wait the next provider could spare the request.
PACE_WITH_ALTERNATIVE_S = 0.05


def paced_out(reply: CallReply) -> bool:
    """The provider actor refused the attempt at its rate limit, before sending anything."""
    return not reply.ok and reply.paced_until is not None


class Attempts:
    def __init__(self, spec: CapabilitySpec, send: Send, coalescer: Coalescer | None, *, clock: Clock,
                 planner: Planner, seen: ProviderViews, outliers: Outliers, settler: Settler, budget: RetryBudget,
                 count: Callable[[str], None], tracing: Any = NO_TRACING):
        self.routing = spec.routing
        self.providers = {p.name: p for p in spec.providers}
        self.resorts = frozenset(p.name for p in spec.providers if p.last_resort)
        self._send = send
        self._coalescer = coalescer
        self.clock = clock
        self.planner = planner
        self.seen = seen
        self.outliers = outliers
        self.settler = settler
        self.budget = budget
        self._count = count
        self.tracing = tracing  # actors/telemetry: a span per attempt of a traced request
        h = spec.routing.hedging
        self.hedge_policy = HedgePolicy(quantile=h.quantile, min_samples=h.min_samples, min_delay_ms=h.min_delay_ms,
                                        max_delay_factor=h.max_delay_factor)
        self.hedges = hedge_budget(h.budget_percent)

    async def round(self, r: Request, recover: bool) -> InvokeResult:
        """One round: the plan walked to a result. When no real provider can
        be tried and the first frees up before the deadline, it waits and
        plans again (`wait_for_reset`); so it does when the gates say so at
        the outbox's turn, then counted (policy/gates.py)."""
        if r.journal and recover:
            settled = await self.settler.recover(r)
            if settled is not None:
                return settled
        if not r.rounds:
            self.budget.deposit(self.clock.time())
            if r.spec.idempotent and self.routing.hedging.enabled:
                self.hedges.deposit(self.clock.time())
        trials: list[str] = []
        try:
            while True:
                plan = self.planner.plan()
                wait = wait_for_reset(plan.reset_in_s, r.deadline - self.clock.monotonic(),
                                      self.routing.wait_for_throttle)
                if wait is None:
                    # Claim the half-open trial now, before anything awaits: two requests
                    # planned together must not both try a provider that is cooling down.
                    if plan.trial is not None:
                        self.seen.views[plan.trial].trial_in_flight = True
                        trials.append(plan.trial)
                    outcome = await self._walk(r, plan)
                    if not isinstance(outcome, Wait):
                        return outcome
                    r.rounds += 1  # a real provider frees up in time: plan anew once it has
                    self._count("waited_for_reset")
                    wait = outcome
                await self.clock.sleep(wait.seconds)
        finally:
            for name in trials:
                self.seen.views[name].trial_in_flight = False

    async def _walk(self, r: Request, plan: Plan) -> InvokeResult | Wait:
        r.candidates = list(plan.order)
        r.skipped = {}
        for s in plan.skipped:
            r.skip(s.name, s)
        tried = 0
        budget_spent = False
        paced = False
        used: set[str] = set()
        for name in plan.order:
            if name in used or name in r.excluded:
                continue
            turn = self._turn(r, plan, name, tried, used)
            verdict = await self._through_gates(turn, r, plan, used)
            if isinstance(verdict, Wait):
                return verdict
            if isinstance(verdict, Stop):
                return failed(r, ErrorKind.DEADLINE_EXCEEDED,
                              f"deadline of {r.deadline_s:g}s passed after {len(r.attempts)} attempt(s)")
            if isinstance(verdict, Skip):
                budget_spent = budget_spent or verdict.reason is SkipReason.RETRY_BUDGET
                if verdict.reason not in UNRECORDED:
                    r.skip(name, verdict)
                continue

            # No hedge needs a newer `now` than the turn's: after a rate-limit wait, no real provider is left.
            partner = hedge_partner(plan.order, name, hedged=r.spec.idempotent and self.routing.hedging.enabled
                                    and not r.draining, tried=tried, used=used, resorts=self.resorts,
                                    buckets=self.seen.buckets, now=turn.now)
            pace_s = None if self.routing.wait_for_throttle and not self._alternative(plan, name, used) \
                else PACE_WITH_ALTERNATIVE_S
            outcomes = await self._attempt_or_hedge(r, name, partner, remaining=turn.remaining_s, pace_s=pace_s)
            for attempt_name, reply, hedge in outcomes:
                used.add(attempt_name)
                if paced_out(reply):
                    r.skip(attempt_name, Skip(attempt_name, SkipReason.RATE_LIMITED, reply.error or ""))
                    paced = True
                    continue
                r.attempts.append(Attempt(provider=attempt_name, ok=reply.ok, error_kind=reply.error_kind, error=reply.error,
                                          latency_ms=round(reply.latency_ms, 3), trial=(attempt_name == plan.trial),
                                          hedge=hedge, maybe_delivered=reply.maybe_delivered, injected=reply.injected))
                if reply.error_kind not in (ErrorKind.NOT_SUPPORTED, ErrorKind.CANCELLED):
                    tried += 1
            winner = next(((n, rep) for n, rep, _ in outcomes if rep.ok), None)
            if winner is not None:
                return succeeded(r, winner[0], winner[1].value, last_resort=winner[0] in self.resorts)
            unjournaled = next((rep for _, rep, _ in outcomes if rep.error_kind is ErrorKind.STORE_UNAVAILABLE), None)
            if unjournaled is not None:  # the store is shared: every other provider would fail alike
                return failed(r, ErrorKind.STORE_UNAVAILABLE, f"{unjournaled.error}. Nothing was sent: retry "
                              "with the same idempotency key once the store is back")
            last_name, last = outcomes[-1][0], outcomes[-1][1]
            if r.journal and last.maybe_delivered:
                settled = await self.settler.settle(r, last_name, last.error)
                if settled is not None:
                    return settled

        if paced and r.rounds < MAX_RESET_WAITS:
            # A provider actor refused at its rate limit, and nothing else served: as when
            # this router's own bucket is empty, wait for the next slot if the deadline allows.
            wait = wait_for_reset(self.planner.plan().reset_in_s, r.deadline - self.clock.monotonic(),
                                  self.routing.wait_for_throttle)
            if wait is not None:
                return wait
        return exhausted(r, r.skipped, out_of_time=self.clock.monotonic() >= r.deadline - MIN_ATTEMPT_S,
                         budget_spent=budget_spent, hint=self.planner.hint())

    def _turn(self, r: Request, plan: Plan, name: str, tried: int, used: set[str]) -> Turn:
        """The snapshot the gates read for provider `name`'s turn, now."""
        now = self.clock.time()
        last_resort = name in self.resorts
        waits_left = MAX_RESET_WAITS - r.rounds
        reset_in_s = None
        if last_resort and not r.draining and self.routing.wait_for_throttle and waits_left > 0:
            reset_in_s = self.planner.plan(now).reset_in_s  # the outbox's turn: is a real provider free again?
        bucket = self.seen.buckets.get(name)
        alternative = bucket is not None and self._alternative(plan, name, used)
        return Turn(name=name, last_resort=last_resort, draining=r.draining, tried=tried,
                    max_attempts=self.routing.max_attempts, remaining_s=r.deadline - self.clock.monotonic(),
                    fastest_ms=fastest_ms(self.seen.latency[name]), now=now, budget=self.budget, bucket=bucket,
                    alternative=alternative, wait_for_throttle=self.routing.wait_for_throttle, waits_left=waits_left,
                    reset_in_s=reset_in_s)

    def _alternative(self, plan: Plan, name: str, used: set[str]) -> bool:
        """Whether a real provider is left to try after `name`."""
        return any(n not in used and n not in self.resorts for n in plan.order[plan.order.index(name) + 1:])

    async def _through_gates(self, turn: Turn, r: Request, plan: Plan, used: set[str]) -> Verdict | None:
        """The first verdict of the gates in order, None if every one lets the
        attempt go ahead. A gate that says Wait (not to plan anew) is asked
        again after the wait."""
        for gate in GATES:
            verdict = gate(turn)
            while isinstance(verdict, Wait) and not verdict.replan:
                await self.clock.sleep(verdict.seconds)
                verdict = gate(self._turn(r, plan, turn.name, turn.tried, used))
            if verdict is not None:
                return verdict
        return None

    async def _attempt_or_hedge(self, r: Request, name: str, partner: str | None, remaining: float,
                                pace_s: float | None = None) -> list[tuple[str, CallReply, bool]]:
        """One attempt; or, for a hedged method, a backup at `partner` once
        the first has taken longer than its recent p95. First success wins."""
        first = asyncio.ensure_future(self._attempt(name, r, pace_s))
        delay = hedge_after_s(self.seen.latency[name], self.hedge_policy, remaining) if partner is not None else None
        if delay is None:
            return [(name, await first, False)]
        done, _ = await asyncio.wait({first}, timeout=delay)
        if done or not may_send_hedge(self.hedges, self.seen.buckets.get(partner), self.clock.time()):
            return [(name, await first, False)]
        assert partner is not None
        self._count("hedges")
        second = asyncio.ensure_future(self._attempt(partner, r, PACE_WITH_ALTERNATIVE_S, hedge=True))
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

    async def _attempt(self, name: str, r: Request, pace_s: float | None = None, hedge: bool = False) -> CallReply:
        """One attempt at provider `name`; in a span of its own when the request is traced."""
        if r.trace is None:
            return await self._call(name, r, pace_s, None)
        span = self.tracing.attempt(r.trace, name, round_=r.retry_rounds, hedged=hedge)
        try:
            reply = await self._call(name, r, pace_s, span.traceparent)
        except asyncio.CancelledError:  # the hedge's partner answered first
            span.end(CallReply(ok=False, error_kind=ErrorKind.CANCELLED,
                               error=f"{name}: cancelled, another attempt answered first"), cancelled=True)
            raise
        span.end(reply)
        return reply

    async def _call(self, name: str, r: Request, pace_s: float | None, traceparent: str | None) -> CallReply:
        view = self.seen.views[name]
        remaining = max(MIN_ATTEMPT_S, r.deadline - self.clock.monotonic())
        ctx = r.context(min(self.providers[name].attempt_timeout_s, remaining), pace_s, traceparent)
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
        if paced_out(reply):  # nothing was sent: no outcome of the provider's to learn from
            view.paced_until = max(view.paced_until, reply.paced_until or 0.0)
            return reply
        self.outliers.observe(name, reply, r.base["dry_run"])
        if reply.ok and not reply.replayed and not r.base["dry_run"]:
            # What this router waits for: the provider's time plus the hop.
            self.seen.latency[name].add((self.clock.monotonic() - started) * 1000)
        return reply
