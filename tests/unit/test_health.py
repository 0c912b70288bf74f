"""Every transition of the health machine, with hand-built outcomes and no clock."""

from __future__ import annotations

import pytest

from actors.errors import ErrorKind
from actors.policy.health import Health, HealthChanged, HealthPolicy, HealthSnapshot, Outcome, Throttled, observe

POLICY = HealthPolicy(healthy_after=5, unhealthy_after=3, cooldown_s=30.0, latency_alpha=0.5)


def ok(at: float = 100.0, latency: float = 10.0) -> Outcome:
    return Outcome(at=at, ok=True, latency_ms=latency)


def fail(kind: ErrorKind = ErrorKind.TRANSIENT, at: float = 100.0, retry_after: float | None = None) -> Outcome:
    return Outcome(at=at, ok=False, latency_ms=5.0, error_kind=kind, error=f"boom ({kind})", retry_after_s=retry_after)


def run(outcomes: list[Outcome], snap: HealthSnapshot | None = None) -> tuple[HealthSnapshot, list]:
    snap = snap or HealthSnapshot()
    events: list = []
    for o in outcomes:
        snap, new = observe(snap, o, POLICY)
        events += new
    return snap, events


def test_first_outcome_moves_unknown_to_degraded() -> None:
    for first in (ok(), fail()):
        snap, events = run([first])
        assert snap.state is Health.DEGRADED
        assert events[0] == HealthChanged(Health.UNKNOWN, Health.DEGRADED, events[0].reason)


def test_five_consecutive_successes_make_healthy_not_four() -> None:
    assert run([ok()] * 4)[0].state is Health.DEGRADED
    snap, events = run([ok()] * 5)
    assert snap.state is Health.HEALTHY
    assert [(e.old, e.new) for e in events] == [(Health.UNKNOWN, Health.DEGRADED), (Health.DEGRADED, Health.HEALTHY)]


def test_three_consecutive_failures_make_unhealthy_with_a_cooldown() -> None:
    assert run([fail()] * 2)[0].state is Health.DEGRADED
    snap, events = run([fail(at=100.0), fail(at=101.0), fail(at=102.0)])
    assert snap.state is Health.UNHEALTHY
    assert snap.cooldown_until == 102.0 + POLICY.cooldown_s
    assert snap.consecutive_failures == 3 and snap.total_failures == 3
    assert events[-1].new is Health.UNHEALTHY and "3 consecutive failures" in events[-1].reason


def test_a_success_resets_the_failure_streak() -> None:
    snap, _ = run([fail(), fail(), ok(), fail(), fail()])
    assert snap.state is Health.DEGRADED
    assert snap.consecutive_failures == 2


def test_healthy_provider_degrades_on_one_failure() -> None:
    snap, _ = run([ok()] * 5 + [fail()])
    assert snap.state is Health.DEGRADED
    assert snap.consecutive_successes == 0


def test_recovery_goes_back_through_degraded() -> None:
    snap, _ = run([fail()] * 3)
    snap, events = run([ok(at=200.0)], snap)
    assert snap.state is Health.DEGRADED and snap.cooldown_until is None
    assert events == [HealthChanged(Health.UNHEALTHY, Health.DEGRADED, "1 consecutive successes")]
    snap, _ = run([ok()] * 4, snap)
    assert snap.state is Health.HEALTHY


def test_failing_trial_extends_the_cooldown() -> None:
    snap, _ = run([fail(at=100.0)] * 3)
    snap, events = run([fail(at=140.0)], snap)
    assert snap.state is Health.UNHEALTHY and events == []
    assert snap.cooldown_until == 140.0 + POLICY.cooldown_s


@pytest.mark.parametrize("kind", [ErrorKind.INVALID_REQUEST, ErrorKind.NOT_SUPPORTED])
def test_request_faults_do_not_count_against_health(kind: ErrorKind) -> None:
    snap, _ = run([ok()] * 5 + [fail(kind)] * 10)
    assert snap.state is Health.HEALTHY
    assert snap.consecutive_successes == 5 and snap.total_failures == 0
    assert snap.total_calls == 15 and snap.last_error_kind is kind


def test_rate_limit_throttles_without_touching_health() -> None:
    snap, _ = run([ok()] * 5)
    snap, events = run([fail(ErrorKind.RATE_LIMITED, at=500.0, retry_after=30)], snap)
    assert snap.state is Health.HEALTHY and snap.consecutive_failures == 0
    assert snap.throttled_until == 530.0 and events == [Throttled(530.0)]
    # without a reset time the policy's default applies
    snap2, _ = run([fail(ErrorKind.RATE_LIMITED, at=500.0)])
    assert snap2.throttled_until == 500.0 + POLICY.default_throttle_s
    # the next success lifts the throttle
    snap, _ = run([ok(at=531.0)], snap)
    assert snap.throttled_until is None


def test_latency_current_and_ewma() -> None:
    snap, _ = run([ok(latency=10.0), ok(latency=30.0), ok(latency=30.0)])
    assert snap.latency_ms == 30.0
    assert snap.latency_ewma_ms == pytest.approx(0.5 * 30 + 0.5 * (0.5 * 30 + 0.5 * 10))


def test_observe_never_mutates_its_input() -> None:
    before = HealthSnapshot()
    after, _ = observe(before, fail(), POLICY)
    assert before == HealthSnapshot() and after is not before


def test_ok_counts_what_was_delivered_not_what_was_not_counted_against_health() -> None:
    snap, _ = run([fail(ErrorKind.INVALID_REQUEST), fail(ErrorKind.RATE_LIMITED, retry_after=1), ok()])
    assert (snap.total_calls, snap.total_ok, snap.total_failures) == (3, 1, 0)
