"""Which providers a request tries, and in what order: one pipeline over
one snapshot, as pure code. "Why did my request go to provider X?" is
answered by this module.

The router hands `plan` a `PlanInput`: its providers as `Candidate`s (the
health each last reported, what only the router sees, each one's cost),
`now`, the ranking the config names, the outlier ejections and those on
delivery outcomes. The steps
run in order, each a small pure function from the plan so far (a `Draft`)
to the next, as the gates before each attempt do (policy/gates.py):

    1. spent_quotas      a provider whose quota or balance is spent is left
                         out (`quota_exhausted`) under any ranking, and never
                         counted against its health (policy.cost)
    2. ordering          the configured ranking orders the rest: `by_health`
                         (the default), `by_cost`, `configured_order`, or a
                         `"module:function"` of your own (policy.ranking)
    3. outlier_demotion  ejected providers and those on probation move after
                         every other one, never dropped; ignored in panic
                         (policy.outliers)
    4. delivery_demotion providers ejected on their delivery outcomes (they
                         answer 202 and drop the mail) move after every
                         other one, never dropped; panic or not, and with
                         policy.outlier off too (policy.delivery_health)
    5. availability      unreachable, throttled and rate-limited providers
                         are left out; an unhealthy one cooling down (or whose
                         trial is in flight) is tried last; one unhealthy
                         provider whose cooldown is over gets a half-open
                         trial, first

then `assemble` makes the `Plan`: the trial, the available ones as ranked,
those cooling down, and the last resort (the outbox); when nothing at all
is available, the unreachable ones anyway (a restarted actor may be back).
Every provider left out or deferred carries a typed reason (policy.skips)
and a detail in words.

When no real provider can be tried now, `Plan.reset_in_s` says when the
first throttled or rate-limited one frees up; whether the request waits for
it is the one throttle wait of policy/gates.py (`wait_for_reset`).

Nothing here reads a clock: `now` is in the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone

import msgspec

from actors.policy.candidate import Candidate
from actors.policy.health import Health
from actors.policy.outliers.demotion import after_the_rest, ejection_skips, unavailable, who_to_demote
from actors.policy.outliers.detection import EjectionState, OutlierPolicy
from actors.policy.ranking import RankPolicy, by_health
from actors.policy.skips import DEFERRED, Skip, SkipReason

__all__ = [
    "STEPS", "Draft", "Plan", "PlanInput", "Step", "assemble", "availability", "delivery_demotion", "ordering", "outlier_demotion",
    "plan",
    "plan_attempts", "plan_within_quota", "quota_skips", "spent_quotas", "start",
]


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    order: list[str]                 # providers to try, in order
    skipped: list[Skip]              # providers left out, and why (policy.skips)
    deferred: list[Skip] = []        # providers put at the end of `order` (unhealthy, outliers), and why
    trial: str | None = None         # the provider given a half-open trial, if any
    last_resort: bool = False        # nothing was available; trying skipped ones anyway
    wait_s: float | None = None      # when a throttled or rate-limited provider frees up
    resorts: int = 0                 # how many of `order`'s last names are last resorts (the outbox)

    @property
    def real(self) -> list[str]:
        """The real providers of `order`: every one but the last resorts."""
        return self.order[:len(self.order) - self.resorts]

    @property
    def reset_in_s(self) -> float | None:
        """When no real provider can be tried now: seconds until the first
        throttled or rate-limited one frees up (None: one can be, or none will)."""
        return None if len(self.order) > self.resorts else self.wait_s


class PlanInput(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a plan reads: one snapshot, taken by the router."""

    candidates: Sequence[Candidate]                  # every provider of the capability, the last resort too
    now: float                                       # wall time, as the providers stamp their health
    rank: RankPolicy = by_health                     # routing.ranking
    ejections: Mapping[str, EjectionState] = {}      # outlier ejection's state of each real provider
    outliers: OutlierPolicy | None = None            # None: no outlier ejection
    delivery_ejected: Mapping[str, float] = {}       # ejected on delivery outcomes: name -> until (wall time)


class Draft(msgspec.Struct, frozen=True, kw_only=True):
    """The plan so far, handed from one step to the next."""

    ranked: list[Candidate]          # the real providers still in: in the order to try once `ordering` ran
    resorts: list[str]               # the last resorts (the outbox), by configured order: tried after the rest
    skipped: list[Skip] = []         # left out, and why
    demoted: list[Skip] = []         # tried after the rest as outliers, and why
    deferred: list[Skip] = []        # unhealthy: tried after the rest, and why (set by `availability`)
    trial: str | None = None         # the half-open trial (set by `availability`)
    wait_s: float | None = None      # the earliest throttle or rate limit to free up (set by `availability`)


Step = Callable[[PlanInput, Draft], Draft]


def _index(c: Candidate) -> int:
    return c.index


def start(inp: PlanInput) -> Draft:
    """Every real provider in, in the order given; the last resorts apart."""
    ranked = [c for c in inp.candidates if not c.last_resort]
    if len(ranked) == len(inp.candidates):
        return Draft(ranked=ranked, resorts=[])
    return Draft(ranked=ranked, resorts=[c.name for c in sorted(inp.candidates, key=_index) if c.last_resort])


# --- the steps, in order --------------------------------------------------------------------------

def _spent(c: Candidate) -> bool:
    return c.cost is not None and c.cost.exhausted is not None and not c.last_resort


def _until(resets_at: float | None) -> str:
    if resets_at is None:
        return "its balance is near zero"
    return f"its quota is spent until {datetime.fromtimestamp(resets_at, tz=timezone.utc):%Y-%m-%d %H:%M} UTC"


def quota_skips(candidates: Sequence[Candidate]) -> tuple[list[Candidate], list[Skip]]:
    """The candidates that may be tried, and the skips of those whose quota
    (or balance) is spent, with the typed reason. The last resort (the
    outbox) is never skipped: it costs nothing. The detail keeps the reason's
    name in front, as the audit log has always shown it."""
    kept: list[Candidate] = []
    skipped: list[Skip] = []
    for c in candidates:
        if _spent(c):
            assert c.cost is not None
            skipped.append(Skip(c.name, SkipReason.QUOTA_EXHAUSTED, f"quota_exhausted: {_until(c.cost.resets_at)}"))
        else:
            kept.append(c)
    return kept, skipped


def spent_quotas(inp: PlanInput, d: Draft) -> Draft:
    """A spent quota is a hard limit under any ranking: left out, first
    among the skips, never counted against the provider's health."""
    if not any(_spent(c) for c in d.ranked):
        return d
    kept, skipped = quota_skips(d.ranked)
    return msgspec.structs.replace(d, ranked=kept, skipped=[*d.skipped, *skipped])


def ordering(inp: PlanInput, d: Draft) -> Draft:
    """The configured ranking (`routing.ranking`, a plain callable: yours may
    be one too) orders the real providers, most preferred first."""
    return msgspec.structs.replace(d, ranked=inp.rank(d.ranked))


def outlier_demotion(inp: PlanInput, d: Draft) -> Draft:
    """The ejected and those on probation after a return are tried after
    every other provider, keeping their order (never dropped: a slow
    provider that answers beats a failed request), unless too few providers
    are in rotation (panic): then ejections are ignored."""
    policy = inp.outliers
    if policy is None or not policy.enabled or not any(st.ejected_until is not None or st.on_probation
                                                       for st in inp.ejections.values()):
        return d
    r = who_to_demote(inp.ejections, inp.now, unavailable(inp.candidates, inp.now), policy)
    if not r.demoted:
        return d
    return msgspec.structs.replace(d, ranked=after_the_rest(d.ranked, r.demoted),
                                   demoted=ejection_skips(r, inp.ejections, inp.now))


def delivery_demotion(inp: PlanInput, d: Draft) -> Draft:
    """Providers ejected on their delivery outcomes are tried after every
    other one, keeping their order (never dropped: with nobody else left,
    a message may still get through). Unlike outlier ejection this holds
    in panic: spreading load onto a provider that fails loudly costs an
    attempt, onto one that answers 202 and drops the mail costs the mail."""
    out = {n: until for n, until in inp.delivery_ejected.items() if inp.now < until}
    if not any(c.name in out for c in d.ranked):
        return d
    skips = [Skip(n, SkipReason.DELIVERY_EJECTED, f"ejected on its delivery outcomes (it drops accepted mail) for "
                  f"{out[n] - inp.now:.0f}s more: tried after the rest") for n in sorted(out)
             if any(c.name == n for c in d.ranked)]
    return msgspec.structs.replace(d, ranked=after_the_rest(d.ranked, out),
                                   demoted=[*(s for s in d.demoted if s.name not in out), *skips])


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


def availability(inp: PlanInput, d: Draft) -> Draft:
    """Who can be tried now. Unreachable, throttled and rate-limited
    providers are left out, with the wait that would free the throttled
    ones; an unhealthy provider still cooling down (or on trial for another
    request) is deferred: the seed tried unhealthy providers last but still
    tried them, costing an attempt only to a request every other provider
    failed. The first unhealthy provider whose cooldown is over gets one
    half-open trial, first: one request tests whether it is back."""
    available: list[Candidate] = []
    deferred: list[Skip] = []
    skipped: list[Skip] = []
    trial: str | None = None
    waits: list[float] = []
    for c in d.ranked:
        skip, wait = _blocked(c, inp.now)
        if skip is None:
            if c.health.state is Health.UNHEALTHY and trial is None:
                trial = c.name
            else:
                available.append(c)
        elif skip.reason in DEFERRED:
            deferred.append(skip)
        else:
            skipped.append(skip)
            if wait is not None:
                waits.append(wait)
    return msgspec.structs.replace(d, ranked=available, deferred=deferred, skipped=[*d.skipped, *skipped],
                                   trial=trial, wait_s=min(waits) if waits else None)


STEPS: tuple[Step, ...] = (spent_quotas, ordering, outlier_demotion, delivery_demotion, availability)


def assemble(d: Draft) -> Plan:
    """The order to try: the trial, the available ones as ranked, those
    deferred for their health, then the last resort. With nothing at all to
    try, the unreachable ones anyway (a restarted actor may be back); never
    a throttled or rate-limited one, which would only refuse again."""
    order = [*([d.trial] if d.trial else []), *(c.name for c in d.ranked), *(s.name for s in d.deferred)]
    if order or d.resorts:
        return Plan(order=[*order, *d.resorts], skipped=d.skipped, deferred=[*d.deferred, *d.demoted], trial=d.trial,
                    wait_s=d.wait_s, resorts=len(d.resorts))
    last = [s.name for s in d.skipped if s.reason is SkipReason.UNREACHABLE]
    return Plan(order=last, skipped=[s for s in d.skipped if s.name not in last], deferred=d.demoted,
                last_resort=bool(last), wait_s=d.wait_s)


def plan(inp: PlanInput, steps: Sequence[Step] = STEPS) -> Plan:
    """The plan for one request: `steps` in order over the snapshot, then `assemble`."""
    d = start(inp)
    for step in steps:
        d = step(inp, d)
    return assemble(d)


# --- the pipeline with fewer steps, as callers before it named them ------------------------------

def plan_attempts(candidates: Sequence[Candidate], now: float, rank: RankPolicy = by_health) -> Plan:
    """Ordering and availability only: no quota left out, nobody demoted."""
    return plan(PlanInput(candidates=candidates, now=now, rank=rank), (ordering, availability))


def plan_within_quota(candidates: Sequence[Candidate], now: float, rank: RankPolicy = by_health) -> Plan:
    """Every step but outlier demotion."""
    return plan(PlanInput(candidates=candidates, now=now, rank=rank), (spent_quotas, ordering, availability))
