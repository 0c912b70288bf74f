"""Ranking order and attempt planning: cooldown, half-open trial, throttling, reachability."""

from __future__ import annotations

import pytest

from actors.policy.health import Health, HealthSnapshot
from actors.policy.planning import plan_attempts
from actors.policy.ranking import Candidate, by_health, configured_order, load_rank_policy
from actors.policy.skips import SkipReason

NOW = 1000.0


def cand(name: str, index: int, state: Health = Health.UNKNOWN, successes: int = 0, ewma: float | None = None,
         **extra) -> Candidate:
    health_fields = {k: extra.pop(k) for k in ("cooldown_until", "throttled_until") if k in extra}
    health = HealthSnapshot(state=state, consecutive_successes=successes, latency_ewma_ms=ewma, **health_fields)
    return Candidate(name=name, index=index, health=health, **extra)


def names(cs) -> list[str]:
    return [c.name for c in cs]


def test_seed_sort_key_health_then_successes_then_latency_then_order() -> None:
    cs = [
        cand("unknown", 0),
        cand("unhealthy", 1, Health.UNHEALTHY),
        cand("degraded", 2, Health.DEGRADED, successes=2),
        cand("healthy_slow", 3, Health.HEALTHY, successes=9, ewma=80),
        cand("healthy_fast", 4, Health.HEALTHY, successes=9, ewma=20),
        cand("healthy_streak", 5, Health.HEALTHY, successes=50, ewma=200),
    ]
    assert names(by_health(cs)) == ["healthy_streak", "healthy_fast", "healthy_slow", "degraded", "unknown", "unhealthy"]


def test_ties_keep_configured_order() -> None:
    assert names(by_health([cand("b", 1), cand("a", 0), cand("c", 2)])) == ["a", "b", "c"]


def test_a_primary_that_answered_once_stays_ahead_of_an_untried_backup() -> None:
    assert names(by_health([cand("backup", 1), cand("primary", 0, Health.DEGRADED, successes=1)])) == ["primary", "backup"]


def test_cooling_down_provider_is_tried_last_with_a_reason() -> None:
    plan = plan_attempts([cand("a", 0, Health.UNHEALTHY, cooldown_until=NOW + 10), cand("b", 1, Health.HEALTHY, 5)], NOW)
    assert plan.order == ["b", "a"] and plan.trial is None and plan.skipped == []
    assert plan.deferred[0].name == "a" and plan.deferred[0].reason is SkipReason.COOLING_DOWN
    assert "cooling down for 10.0s" in plan.deferred[0].detail


def test_after_cooldown_one_half_open_trial_goes_first() -> None:
    plan = plan_attempts([cand("a", 0, Health.UNHEALTHY, cooldown_until=NOW - 1), cand("b", 1, Health.HEALTHY, 5)], NOW)
    assert plan.order == ["a", "b"] and plan.trial == "a"


def test_only_one_trial_at_a_time() -> None:
    plan = plan_attempts([cand("a", 0, Health.UNHEALTHY, cooldown_until=NOW - 1, trial_in_flight=True),
                          cand("b", 1, Health.HEALTHY, 5)], NOW)
    assert plan.order == ["b", "a"] and plan.trial is None and plan.deferred[0].reason is SkipReason.TRIAL_IN_FLIGHT
    assert "trial" in plan.deferred[0].detail


def test_throttled_and_unreachable_are_skipped() -> None:
    plan = plan_attempts([cand("t", 0, Health.HEALTHY, 9, throttled_until=NOW + 5),
                          cand("u", 1, Health.HEALTHY, 9, unreachable_until=NOW + 1),
                          cand("ok", 2, Health.DEGRADED, 1)], NOW)
    assert plan.order == ["ok"]
    assert {(s.name, s.reason) for s in plan.skipped} == {("t", SkipReason.THROTTLED), ("u", SkipReason.UNREACHABLE)}


def test_cooling_down_is_tried_but_never_throttled() -> None:
    plan = plan_attempts([cand("t", 0, Health.HEALTHY, 9, throttled_until=NOW + 5),
                          cand("c", 1, Health.UNHEALTHY, cooldown_until=NOW + 5)], NOW)
    assert plan.order == ["c"] and [s.name for s in plan.skipped] == ["t"] and plan.wait_s == 5


def test_an_unreachable_actor_is_tried_when_nothing_else_can_be() -> None:
    plan = plan_attempts([cand("u", 0, Health.HEALTHY, 9, unreachable_until=NOW + 1),
                          cand("t", 1, Health.HEALTHY, 9, throttled_until=NOW + 5)], NOW)
    assert plan.last_resort and plan.order == ["u"] and [s.name for s in plan.skipped] == ["t"]


def test_all_throttled_leaves_nothing_to_try() -> None:
    plan = plan_attempts([cand("t", 0, Health.HEALTHY, 9, throttled_until=NOW + 5)], NOW)
    assert plan.order == [] and not plan.last_resort


def test_policy_is_pluggable_by_dotted_path() -> None:
    assert load_rank_policy("actors.policy.ranking:configured_order") is configured_order
    assert load_rank_policy("actors.policy.ranking.by_health") is by_health
    plan = plan_attempts([cand("b", 1, Health.HEALTHY, 9), cand("a", 0)], NOW, configured_order)
    assert plan.order == ["a", "b"]
    with pytest.raises(ValueError, match="cannot load ranking policy"):
        load_rank_policy("actors.policy.ranking:nope")
