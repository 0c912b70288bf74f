"""The plan as one pipeline (policy/planning.py), called on hand-built
snapshots: no router, no Ray, no clock. One test per step (each called on
its own, on a hand-built draft), then the steps together."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from actors.policy.candidate import Candidate, CostView, Exhaustion
from actors.policy.health import Health, HealthSnapshot
from actors.policy.outliers.detection import EjectionState, EjectReason, OutlierPolicy
from actors.policy.planning import (
    STEPS,
    Draft,
    Plan,
    PlanInput,
    assemble,
    availability,
    delivery_demotion,
    ordering,
    outlier_demotion,
    plan,
    spent_quotas,
    start,
)
from actors.policy.ranking import by_cost, by_health, configured_order
from actors.policy.skips import Skip, SkipReason

NOW = 1_700_000_000.0   # 2023-11-14 22:13:20 UTC


def cand(name: str, index: int, state: Health = Health.HEALTHY, successes: int = 10, *, cost: CostView | None = None,
         last_resort: bool = False, unreachable_until: float | None = None, rate_wait_s: float = 0.0,
         trial_in_flight: bool = False, **health: float) -> Candidate:
    return Candidate(name=name, index=index, health=HealthSnapshot(state=state, consecutive_successes=successes, **health),
                     cost=cost, last_resort=last_resort, unreachable_until=unreachable_until, rate_wait_s=rate_wait_s,
                     trial_in_flight=trial_in_flight)


def names(cs: Sequence[Candidate]) -> list[str]:
    return [c.name for c in cs]


def spent(resets_at: float | None = NOW + 3600) -> CostView:
    return CostView(per_call=0.01, currency="USD", exhausted=Exhaustion.QUOTA if resets_at else Exhaustion.BALANCE,
                    resets_at=resets_at)


EJECTED = EjectionState(ejections=1, ejected_at=NOW - 1, ejected_until=NOW + 29, reason=EjectReason.SLOW_CALLS)
OUTBOX = cand("outbox", 9, last_resort=True)


# --- start -------------------------------------------------------------------------------------

def test_start_puts_the_last_resorts_apart_by_configured_order() -> None:
    d = start(PlanInput(candidates=[cand("o2", 5, last_resort=True), cand("a", 0), cand("o1", 4, last_resort=True)],
                        now=NOW))
    assert names(d.ranked) == ["a"] and d.resorts == ["o1", "o2"] and d.skipped == [] and d.trial is None


# --- 1. spent_quotas ---------------------------------------------------------------------------

def test_spent_quotas_leaves_out_a_spent_provider_with_the_typed_reason_and_when_it_comes_back() -> None:
    inp = PlanInput(candidates=[], now=NOW)
    d = Draft(ranked=[cand("a", 0, cost=spent()), cand("b", 1), cand("low", 2, cost=spent(None))], resorts=["outbox"])
    after = spent_quotas(inp, d)
    assert names(after.ranked) == ["b"] and after.resorts == ["outbox"]
    assert [(s.name, s.reason) for s in after.skipped] == [("a", SkipReason.QUOTA_EXHAUSTED),
                                                           ("low", SkipReason.QUOTA_EXHAUSTED)]
    assert after.skipped[0].detail == "quota_exhausted: its quota is spent until 2023-11-14 23:13 UTC"
    assert after.skipped[1].detail == "quota_exhausted: its balance is near zero"


def test_spent_quotas_changes_nothing_when_no_quota_is_spent() -> None:
    d = Draft(ranked=[cand("a", 0, cost=CostView(per_call=0.01)), cand("b", 1)], resorts=[])
    assert spent_quotas(PlanInput(candidates=[], now=NOW), d) is d


# --- 2. ordering -------------------------------------------------------------------------------

def test_ordering_is_the_configured_ranking() -> None:
    d = Draft(ranked=[cand("dear", 0, cost=CostView(per_call=0.05)), cand("cheap", 1, successes=0,
                                                                          cost=CostView(per_call=0.001))], resorts=[])
    assert names(ordering(PlanInput(candidates=[], now=NOW), d).ranked) == ["dear", "cheap"]        # by_health
    assert names(ordering(PlanInput(candidates=[], now=NOW, rank=by_cost), d).ranked) == ["cheap", "dear"]
    assert names(ordering(PlanInput(candidates=[], now=NOW, rank=configured_order),
                          Draft(ranked=list(reversed(d.ranked)), resorts=[])).ranked) == ["dear", "cheap"]


def test_a_ranking_of_your_own_is_the_ordering_step() -> None:
    seen: list[list[str]] = []

    def alphabetical_backwards(candidates: Sequence[Candidate]) -> list[Candidate]:
        seen.append(names(candidates))
        return sorted(candidates, key=lambda c: c.name, reverse=True)

    p = plan(PlanInput(candidates=[cand("a", 0), cand("spent", 1, cost=spent()), cand("c", 2), OUTBOX], now=NOW,
                       rank=alphabetical_backwards))
    assert p.order == ["c", "a", "outbox"]
    assert seen == [["a", "c"]]   # asked once, with the real providers a spent quota left in


# --- 3. outlier_demotion -----------------------------------------------------------------------

def test_outlier_demotion_moves_the_ejected_after_the_rest_with_the_typed_reason() -> None:
    inp = PlanInput(candidates=[cand("slow", 0), cand("a", 1), cand("b", 2)], now=NOW,
                    ejections={"slow": EJECTED, "a": EjectionState(), "b": EjectionState()}, outliers=OutlierPolicy())
    d = Draft(ranked=[cand("slow", 0), cand("a", 1), cand("b", 2)], resorts=[])
    after = outlier_demotion(inp, d)
    assert names(after.ranked) == ["a", "b", "slow"]
    assert after.demoted == [Skip("slow", SkipReason.OUTLIER_EJECTED, "ejected (slow_calls) for 29s more: tried after the rest")]


def test_outlier_demotion_is_off_without_ejections_when_disabled_and_in_panic() -> None:
    d = Draft(ranked=[cand("slow", 0), cand("a", 1)], resorts=[])
    states = {"slow": EJECTED, "a": EjectionState()}
    assert outlier_demotion(PlanInput(candidates=d.ranked, now=NOW), d) is d                      # no outlier policy
    assert outlier_demotion(PlanInput(candidates=d.ranked, now=NOW, ejections={"slow": EjectionState(), "a": EjectionState()},
                                      outliers=OutlierPolicy()), d) is d                            # nobody ejected
    assert outlier_demotion(PlanInput(candidates=d.ranked, now=NOW, ejections=states,
                                      outliers=OutlierPolicy(enabled=False)), d) is d
    sick = [cand("slow", 0), cand("a", 1, Health.UNHEALTHY, cooldown_until=NOW + 5)]  # a out for its health: panic
    assert outlier_demotion(PlanInput(candidates=sick, now=NOW, ejections=states, outliers=OutlierPolicy()), d) is d


# --- 4. delivery_demotion ------------------------------------------------------------------------

def test_delivery_demotion_holds_in_panic_and_without_outlier_ejection_and_ends_with_the_ejection() -> None:
    # smtp is out for its health and sg ejected on its drops: outlier ejection would call it panic
    # (one of three in rotation) and try sg first again; a provider that drops the mail goes last anyway.
    candidates = [cand("smtp", 0, Health.UNHEALTHY, 0, cooldown_until=NOW + 10), cand("sg", 1), cand("mg", 2), OUTBOX]
    for outliers in (OutlierPolicy(), OutlierPolicy(enabled=False), None):
        p = plan(PlanInput(candidates=candidates, now=NOW, rank=configured_order, outliers=outliers,
                           ejections={n: EjectionState() for n in ("smtp", "sg", "mg")},
                           delivery_ejected={"sg": NOW + 60}))
        assert p.order == ["mg", "sg", "smtp", "outbox"], outliers   # cooling down: tried last, as ever
        assert [(s.name, s.reason) for s in p.deferred] == [("smtp", SkipReason.COOLING_DOWN),
                                                            ("sg", SkipReason.DELIVERY_EJECTED)]
    d = Draft(ranked=[cand("sg", 0), cand("mg", 1)], resorts=[])
    assert delivery_demotion(PlanInput(candidates=d.ranked, now=NOW, delivery_ejected={"sg": NOW}), d) is d  # over
    assert delivery_demotion(PlanInput(candidates=d.ranked, now=NOW), d) is d
    both = delivery_demotion(PlanInput(candidates=d.ranked, now=NOW, delivery_ejected={"sg": NOW + 5}),
                             Draft(ranked=d.ranked, resorts=[], demoted=[Skip("sg", SkipReason.OUTLIER_EJECTED)]))
    assert names(both.ranked) == ["mg", "sg"] and [s.reason for s in both.demoted] == [SkipReason.DELIVERY_EJECTED]


# --- 5. availability ---------------------------------------------------------------------------

def test_availability_leaves_out_the_blocked_defers_the_unhealthy_and_gives_one_trial() -> None:
    d = Draft(ranked=[
        cand("ready_again", 0, Health.UNHEALTHY, 0, cooldown_until=NOW - 1),     # cooldown over: the trial
        cand("fine", 1),
        cand("second_ready", 2, Health.UNHEALTHY, 0, cooldown_until=NOW - 1),    # one trial at a time: just available
        cand("cooling", 3, Health.UNHEALTHY, 0, cooldown_until=NOW + 10),
        cand("on_trial", 4, Health.UNHEALTHY, 0, cooldown_until=NOW - 1, trial_in_flight=True),
        cand("throttled", 5, throttled_until=NOW + 5),
        cand("paced", 6, rate_wait_s=0.25),
        cand("gone", 7, unreachable_until=NOW + 1),
    ], resorts=["outbox"], skipped=[Skip("spent", SkipReason.QUOTA_EXHAUSTED, "quota_exhausted: ...")])
    after = availability(PlanInput(candidates=[], now=NOW), d)
    assert after.trial == "ready_again" and names(after.ranked) == ["fine", "second_ready"]
    assert [(s.name, s.reason) for s in after.deferred] == [("cooling", SkipReason.COOLING_DOWN),
                                                            ("on_trial", SkipReason.TRIAL_IN_FLIGHT)]
    assert [(s.name, s.reason) for s in after.skipped] == [
        ("spent", SkipReason.QUOTA_EXHAUSTED), ("throttled", SkipReason.THROTTLED), ("paced", SkipReason.RATE_LIMITED),
        ("gone", SkipReason.UNREACHABLE)]
    assert after.wait_s == 0.25   # the earliest throttle or rate limit to free up; unreachable is no wait


# --- assemble ------------------------------------------------------------------------------------

def test_assemble_tries_the_trial_the_available_the_deferred_then_the_last_resort() -> None:
    p = assemble(Draft(ranked=[cand("a", 0)], resorts=["outbox"], trial="t",
                       deferred=[Skip("cool", SkipReason.COOLING_DOWN)],
                       demoted=[Skip("slow", SkipReason.OUTLIER_EJECTED)]))
    assert p.order == ["t", "a", "cool", "outbox"] and p.trial == "t" and p.resorts == 1
    assert [s.name for s in p.deferred] == ["cool", "slow"]
    assert p.real == ["t", "a", "cool"] and not p.last_resort


def test_with_nothing_to_try_the_unreachable_are_tried_anyway_never_the_throttled() -> None:
    p = assemble(Draft(ranked=[], resorts=[], wait_s=5.0,
                       skipped=[Skip("u", SkipReason.UNREACHABLE), Skip("t", SkipReason.THROTTLED)]))
    assert p.order == ["u"] and p.last_resort and [s.name for s in p.skipped] == ["t"]
    nothing = assemble(Draft(ranked=[], resorts=[], wait_s=5.0, skipped=[Skip("t", SkipReason.THROTTLED)]))
    assert nothing.order == [] and not nothing.last_resort and nothing.wait_s == 5.0


def test_reset_in_s_only_when_no_real_provider_can_be_tried() -> None:
    assert Plan(order=["outbox"], skipped=[], wait_s=3.0, resorts=1).reset_in_s == 3.0
    assert Plan(order=[], skipped=[], wait_s=3.0).reset_in_s == 3.0
    assert Plan(order=["a", "outbox"], skipped=[], wait_s=3.0, resorts=1).reset_in_s is None
    assert Plan(order=["outbox"], skipped=[], resorts=1).reset_in_s is None      # nothing will free up


# --- the steps together ----------------------------------------------------------------------------

def test_the_steps_run_in_this_order() -> None:
    assert [s.__name__ for s in STEPS] == ["spent_quotas", "ordering", "outlier_demotion", "delivery_demotion",
                                             "availability"]


def test_why_did_my_request_go_to_provider_x() -> None:
    """Every step has its say on one snapshot, and the plan says why for each provider."""
    candidates = [
        cand("cheap", 0, cost=spent()),                                          # 1. its quota is spent: out
        cand("slow", 1, successes=99),                                           # 3. ejected: after the rest
        cand("sick", 2, Health.UNHEALTHY, 0, cooldown_until=NOW + 10),           # 4. cooling down: last
        cand("busy", 3, throttled_until=NOW + 2),                                # 4. throttled: out
        cand("x", 4),                                                            # the one that serves
        OUTBOX,
    ]
    p = plan(PlanInput(candidates=candidates, now=NOW, rank=by_health,
                       ejections={n: EJECTED if n == "slow" else EjectionState() for n in ("cheap", "slow", "sick", "busy", "x")},
                       outliers=OutlierPolicy()))
    assert p.order == ["x", "slow", "sick", "outbox"]
    assert {s.name: s.reason for s in p.skipped} == {"cheap": SkipReason.QUOTA_EXHAUSTED, "busy": SkipReason.THROTTLED}
    assert {s.name: s.reason for s in p.deferred} == {"sick": SkipReason.COOLING_DOWN, "slow": SkipReason.OUTLIER_EJECTED}
    assert p.wait_s == pytest.approx(2.0) and p.reset_in_s is None and p.real == ["x", "slow", "sick"]


def test_a_demoted_provider_goes_before_those_cooling_down_and_panic_puts_it_back() -> None:
    candidates = [cand("slow", 0, successes=99), cand("a", 1), cand("c", 2),
                  cand("b", 3, Health.UNHEALTHY, 0, cooldown_until=NOW + 5)]
    ejections = {"slow": EJECTED, "a": EjectionState(), "b": EjectionState(), "c": EjectionState()}
    assert plan(PlanInput(candidates=candidates, now=NOW, ejections=ejections,
                          outliers=OutlierPolicy())).order == ["a", "c", "slow", "b"]
    # one provider fewer in rotation: below half, ejections are ignored (panic)
    three = {n: st for n, st in ejections.items() if n != "c"}
    assert plan(PlanInput(candidates=[c for c in candidates if c.name != "c"], now=NOW, ejections=three,
                          outliers=OutlierPolicy())).order == ["slow", "a", "b"]


def test_fewer_steps_make_the_plans_callers_named_before() -> None:
    from actors.policy.planning import plan_attempts, plan_within_quota

    cs = [cand("a", 0, cost=spent()), cand("b", 1), OUTBOX]
    assert plan_attempts(cs, NOW).order == ["a", "b", "outbox"]          # no quota left out
    assert plan_within_quota(cs, NOW).order == ["b", "outbox"]
    assert plan_within_quota(cs, NOW) == plan(PlanInput(candidates=cs, now=NOW))   # no ejections: the same
