"""Which providers a request tries, and in what order, as pure code.

`rank` policies order candidates (most preferred first); `plan_attempts`
applies availability on top: providers cooling down, throttled or unreachable
are skipped with a typed reason (policy.skips), and an UNHEALTHY provider whose cooldown has
passed gets one half-open trial at the front. The policy is pluggable: any
callable `(Sequence[Candidate]) -> list[Candidate]`, named in config by its
dotted path (`routing.ranking`): `by_health` (the default), `by_cost`,
`configured_order`. A `Candidate` is defined in policy/candidate.py (and
importable from here).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence

import msgspec

from actors.policy.candidate import Candidate
from actors.policy.health import Health
from actors.policy.skips import DEFERRED, Skip, SkipReason


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    order: list[str]                 # providers to try, in order
    skipped: list[Skip]              # providers left out, and why (policy.skips)
    deferred: list[Skip] = []        # unhealthy ones put at the end of `order`, and why
    trial: str | None = None         # the provider given a half-open trial, if any
    last_resort: bool = False        # nothing was available; trying skipped ones anyway
    wait_s: float | None = None      # when a throttled or rate-limited provider frees up


RankPolicy = Callable[[Sequence[Candidate]], list[Candidate]]

HEALTH_PRIORITY = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNKNOWN: 2, Health.THROTTLED: 2, Health.UNHEALTHY: 3}


def by_health(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The seed's key: health, then consecutive successes, then lower latency; then configured order.

    DEGRADED ranks above UNKNOWN so that a primary that has just answered
    once is not overtaken by a backup nobody has tried.
    """

    def key(c: Candidate) -> tuple:
        h = c.health
        latency = h.latency_ewma_ms if h.latency_ewma_ms is not None else 0.0
        return (HEALTH_PRIORITY[h.state], -h.consecutive_successes, latency, c.index)

    return sorted(candidates, key=key)


def by_cost(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The cheapest provider with quota left among those the health rules
    allow, first; ties by the seed's key (`by_health`'s order). The price
    and quota are each candidate's `cost` (policy.cost makes them).

    Order: quota left before spent (spent ones are skipped by
    `cost.plan_within_quota`; here they only go last), then not UNHEALTHY
    before UNHEALTHY (plan_attempts defers those cooling down and gives one
    a trial), then the price (unknown last), then by_health's order."""
    seed = {id(c): i for i, c in enumerate(by_health(candidates))}

    def key(c: Candidate) -> tuple:
        view = c.cost
        price = view.per_call if view is not None and view.per_call is not None else math.inf
        return (view is not None and view.exhausted is not None, c.health.state is Health.UNHEALTHY, price, seed[id(c)])

    return sorted(candidates, key=key)


def configured_order(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Strict priority: the listed order, whatever the health."""
    return sorted(candidates, key=lambda c: c.index)


def load_rank_policy(dotted: str) -> RankPolicy:
    """`package.module:function` or `package.module.function`."""
    module_name, _, attr = dotted.partition(":") if ":" in dotted else dotted.rpartition(".")
    try:
        policy = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"cannot load ranking policy {dotted!r}: {exc}") from None
    if not callable(policy):
        raise ValueError(f"ranking policy {dotted!r} is not callable")
    return policy


def _blocked(c: Candidate, now: float) -> tuple[Skip | None, float | None]:
    """Why a candidate cannot be tried now, and in how many seconds a wait would end
    (only for waits worth sitting out: a throttle or our own rate limit)."""
    h = c.health
    if c.unreachable_until is not None and c.unreachable_until > now:
        return Skip(c.name, SkipReason.UNREACHABLE, "actor unreachable (dead or restarting)"), None
    if h.throttled_until is not None and h.throttled_until > now:
        wait = h.throttled_until - now
        return Skip(c.name, SkipReason.THROTTLED, f"throttled for {wait:.1f}s more"), wait
    if c.rate_wait_s > 0:
        return Skip(c.name, SkipReason.RATE_LIMITED,
                    f"at its configured rate limit (next slot in {c.rate_wait_s:.2f}s)"), c.rate_wait_s
    if h.state is Health.UNHEALTHY:
        if h.cooldown_until is not None and h.cooldown_until > now:
            return Skip(c.name, SkipReason.COOLING_DOWN,
                        f"unhealthy, cooling down for {h.cooldown_until - now:.1f}s more: tried last"), None
        if c.trial_in_flight:
            return Skip(c.name, SkipReason.TRIAL_IN_FLIGHT, "unhealthy, a trial request is in flight: tried last"), None
    return None, None


def plan_attempts(candidates: Sequence[Candidate], now: float, rank: RankPolicy = by_health) -> Plan:
    """The order to try providers in: a half-open trial first (an unhealthy
    provider whose cooldown is over), then the available ones as ranked, then
    those still cooling down (the seed tried unhealthy providers last but
    still tried them: they cost an attempt only to a request every other
    provider failed), then the last resort (the outbox). Throttled,
    rate-limited and unreachable providers are left out, with the reason."""
    ranked = rank([c for c in candidates if not c.last_resort])
    resorts = [c.name for c in sorted(candidates, key=lambda c: c.index) if c.last_resort]
    available: list[str] = []
    cooling: list[Skip] = []
    skipped: list[Skip] = []
    trial: str | None = None
    waits: list[float] = []
    for c in ranked:
        skip, wait = _blocked(c, now)
        if skip is None:
            if c.health.state is Health.UNHEALTHY and trial is None:
                trial = c.name  # cooldown over: one request tests whether it is back
            else:
                available.append(c.name)
        elif skip.reason in DEFERRED:
            cooling.append(skip)
        else:
            skipped.append(skip)
            if wait is not None:
                waits.append(wait)
    wait_s = min(waits) if waits else None
    order = [*([trial] if trial else []), *available, *(d.name for d in cooling)]
    if order or resorts:
        return Plan(order=[*order, *resorts], skipped=skipped, deferred=cooling, trial=trial, wait_s=wait_s)
    # Nothing but unreachable, throttled or rate-limited providers. Try the
    # unreachable ones anyway (a restarted actor may be back); never a
    # throttled or rate-limited one, which would only refuse again.
    last = [s.name for s in skipped if s.reason is SkipReason.UNREACHABLE]
    return Plan(order=last, skipped=[s for s in skipped if s.name not in last], last_resort=bool(last), wait_s=wait_s)
