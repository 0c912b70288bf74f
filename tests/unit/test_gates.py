"""The gates a request passes before each attempt (policy.gates), called
directly on hand-built turns: no router, no Ray, no clock, no sleep."""

from __future__ import annotations

import pytest

from actors.policy.budget import RetryBudget
from actors.policy.gates import (
    GATES,
    MIN_ATTEMPT_S,
    Replan,
    Stop,
    Turn,
    Wait,
    deadline,
    feasible,
    max_attempts,
    outbox_while_draining,
    rate_limit,
    retry_budget,
    fastest_ms,
    wait_for_a_reset,
    wait_for_reset,
)
from actors.policy.hedging import LatencyWindow
from actors.policy.ratelimit import TokenBucket
from actors.policy.skips import Skip, SkipReason

NOW = 1000.0


def first_verdict(turn: Turn):
    for gate in GATES:
        verdict = gate(turn)
        if verdict is not None:
            return verdict
    return None


def test_a_fresh_turn_passes_every_gate() -> None:
    assert first_verdict(Turn(name="a", remaining_s=10.0, budget=RetryBudget(), now=NOW)) is None


def test_the_outbox_is_passed_over_while_its_own_items_are_delivered() -> None:
    assert outbox_while_draining(Turn(name="outbox", last_resort=True, draining=True)) == Skip("outbox", SkipReason.DRAINING)
    assert outbox_while_draining(Turn(name="outbox", last_resort=True)) is None
    assert outbox_while_draining(Turn(name="a", draining=True)) is None


@pytest.mark.parametrize("turn, verdict", [
    (Turn(name="outbox", last_resort=True, waits_left=3, reset_in_s=2.0, remaining_s=10.0), Replan(2.0)),
    (Turn(name="outbox", last_resort=True, waits_left=3, reset_in_s=20.0, remaining_s=10.0), None),   # past the deadline
    (Turn(name="outbox", last_resort=True, waits_left=0, reset_in_s=2.0, remaining_s=10.0), None),    # waited enough
    (Turn(name="outbox", last_resort=True, waits_left=3, reset_in_s=None, remaining_s=10.0), None),   # nothing to wait for
    (Turn(name="outbox", last_resort=True, waits_left=3, reset_in_s=2.0, remaining_s=10.0, wait_for_throttle=False), None),
    (Turn(name="a", waits_left=3, reset_in_s=2.0, remaining_s=10.0), None),                          # only before queueing
])
def test_a_request_waits_for_a_throttle_rather_than_be_queued(turn: Turn, verdict) -> None:
    assert wait_for_a_reset(turn) == verdict


def test_max_attempts_counts_real_providers_only() -> None:
    assert max_attempts(Turn(name="a", tried=3, max_attempts=3)) == Skip("a", SkipReason.MAX_ATTEMPTS)
    assert max_attempts(Turn(name="a", tried=2, max_attempts=3)) is None
    assert max_attempts(Turn(name="outbox", tried=3, max_attempts=3, last_resort=True)) is None


def test_the_deadline_stops_the_request() -> None:
    assert deadline(Turn(name="a", remaining_s=MIN_ATTEMPT_S / 2)) == Stop()
    assert deadline(Turn(name="a", remaining_s=MIN_ATTEMPT_S)) is None


def test_a_provider_whose_fastest_answers_do_not_fit_is_passed_over() -> None:
    skip = feasible(Turn(name="a", remaining_s=0.03, fastest_ms=100.0))
    assert skip == Skip("a", SkipReason.INFEASIBLE, "cannot answer in the 30 ms left (its fastest recent: 100 ms)")
    assert feasible(Turn(name="a", remaining_s=0.2, fastest_ms=100.0)) is None
    assert feasible(Turn(name="a", remaining_s=0.03, fastest_ms=None)) is None          # too few answers seen
    assert feasible(Turn(name="outbox", remaining_s=0.03, fastest_ms=100.0, last_resort=True)) is None


def test_fallbacks_draw_on_the_retry_budget_the_first_attempt_does_not() -> None:
    budget = RetryBudget(percent=0, min_per_s=0.1, ttl_s=10)  # one fallback in the window
    assert retry_budget(Turn(name="a", tried=0, budget=budget, now=NOW)) is None
    assert retry_budget(Turn(name="b", tried=1, budget=budget, now=NOW)) is None
    spent = retry_budget(Turn(name="c", tried=2, budget=budget, now=NOW))
    assert isinstance(spent, Skip) and spent.reason is SkipReason.RETRY_BUDGET
    assert retry_budget(Turn(name="outbox", tried=2, budget=budget, now=NOW, last_resort=True)) is None
    assert retry_budget(Turn(name="c", tried=2, budget=budget, now=NOW, draining=True)) is None
    assert retry_budget(Turn(name="c", tried=2, budget=budget, now=NOW + 11)) is None   # the window moved on


def test_a_rate_limit_spills_over_or_waits_when_nothing_else_is_left() -> None:
    bucket = TokenBucket(rate_per_s=2, burst=1)
    assert rate_limit(Turn(name="a", bucket=bucket, now=NOW)) is None                   # the one token
    assert rate_limit(Turn(name="a", bucket=bucket, now=NOW, alternative=True, remaining_s=10)) == \
        Skip("a", SkipReason.RATE_LIMITED, "at its configured rate limit")
    assert rate_limit(Turn(name="a", bucket=bucket, now=NOW, remaining_s=10)) == Wait(0.5)
    assert isinstance(rate_limit(Turn(name="a", bucket=bucket, now=NOW, remaining_s=0.1)), Skip)   # past the deadline
    assert isinstance(rate_limit(Turn(name="a", bucket=bucket, now=NOW, remaining_s=10, wait_for_throttle=False)), Skip)
    assert rate_limit(Turn(name="a", bucket=bucket, now=NOW + 0.5, remaining_s=10)) is None  # after the wait
    assert rate_limit(Turn(name="b", bucket=None)) is None


def test_the_gates_run_in_order_and_a_later_one_takes_nothing_when_an_earlier_one_stops() -> None:
    budget = RetryBudget(percent=0, min_per_s=0.1, ttl_s=10)
    out_of_time = Turn(name="b", tried=1, remaining_s=0.0, budget=budget, now=NOW)
    assert first_verdict(out_of_time) == Stop()
    assert budget.balance(NOW) == pytest.approx(1.0)      # the deadline stopped it before the budget was drawn on
    assert [g.__name__ for g in GATES] == ["outbox_while_draining", "wait_for_a_reset", "max_attempts", "deadline",
                                           "feasible", "retry_budget", "rate_limit"]


def test_one_wait_for_a_throttle_before_the_first_attempt_and_at_the_outbox_s_turn() -> None:
    """`wait_for_reset` is the one decision; `wait_for_a_reset` asks it at the outbox's turn."""
    assert wait_for_reset(2.0, remaining_s=10.0, wait_for_throttle=True) == Replan(2.0) == Wait(2.0, replan=True)
    assert wait_for_reset(None, remaining_s=10.0, wait_for_throttle=True) is None        # a real provider is free
    assert wait_for_reset(2.0, remaining_s=2.0, wait_for_throttle=True) is None          # it frees up too late
    assert wait_for_reset(2.0, remaining_s=10.0, wait_for_throttle=False) is None
    turn = Turn(name="outbox", last_resort=True, waits_left=1, reset_in_s=2.0, remaining_s=10.0)
    assert wait_for_a_reset(turn) == wait_for_reset(2.0, 10.0, True)


def test_the_fastest_recent_answers_once_enough_are_known() -> None:
    w = LatencyWindow()
    for ms in range(1, 10):
        w.add(float(ms))
    assert fastest_ms(w) is None          # nine: too few
    w.add(10.0)
    assert fastest_ms(w) == 2.0           # the 10th percentile of ten
