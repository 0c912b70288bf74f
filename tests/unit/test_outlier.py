"""Outlier ejection over hand-built snapshots: no clock, no Ray, no sleep."""

from __future__ import annotations

import random

import msgspec
import pytest

from actors.errors import ErrorKind
from actors.policy.health import Health, HealthSnapshot
from actors.policy.outliers.demotion import demote, ejection_skips, who_to_demote
from actors.policy.outliers.detection import (
    EjectReason,
    Ejected,
    EjectionState,
    OutcomeWindow,
    OutlierEvent,
    OutlierPolicy,
    PanicEnded,
    PanicStarted,
    ProviderView,
    ReturnReason,
    Returned,
    Sample,
    Source,
    SpareReason,
    Spared,
    ejection_s,
    in_panic,
    max_ejected,
    sample_of,
    sweep,
)
from actors.policy.planning import plan_attempts
from actors.policy.ranking import Candidate, by_health
from actors.policy.skips import SkipReason

NOW = 10_000.0
POLICY = OutlierPolicy()


def calls(median_ms: float, n: int = 40, *, jitter: float = 0.2, fail_every: int = 0, seed: int = 0,
          source: Source = Source.LIVE, start: float = NOW - 30, step: float = 0.5) -> tuple[Sample, ...]:
    """n samples around median_ms (uniform +-jitter), every fail_every-th a failure."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ok = not (fail_every and i % fail_every == 0)
        out.append(Sample(start + i * step, ok, median_ms * (1 + rng.uniform(-jitter, jitter)) if ok else None, source))
    return tuple(out)


def view(name: str, samples: tuple[Sample, ...] = (), **state) -> ProviderView:
    available = state.pop("available", True)
    probe_kind = state.pop("probe_kind", "")
    return ProviderView(name=name, samples=samples, state=EjectionState(**state), available=available,
                        probe_kind=probe_kind)


def kinds(events: list[OutlierEvent]) -> list[tuple[str, str]]:
    return [(type(e).__name__, getattr(e, "name", "")) for e in events]


# -- samples ---------------------------------------------------------------

@pytest.mark.parametrize("ok, kind, latency, expected", [
    (True, None, 50.0, Sample(1.0, True, 50.0)),
    (False, ErrorKind.TIMEOUT, 10_000.0, Sample(1.0, False, 10_000.0)),     # a timeout's latency: slowness
    (False, ErrorKind.TRANSIENT, 3.0, Sample(1.0, False, None)),            # a fast 5xx must not look quick
    (False, ErrorKind.AUTH, 3.0, Sample(1.0, False, None)),
    (False, ErrorKind.INVALID_REQUEST, 3.0, None),                          # the request's fault
    (False, ErrorKind.NOT_SUPPORTED, 0.0, None),
    (False, ErrorKind.RATE_LIMITED, 3.0, None),                             # our pace: throttling handles it
    (False, ErrorKind.UNAVAILABLE, 0.0, None),                              # our actor restarting
    (False, ErrorKind.CANCELLED, 80.0, None),                               # a hedge cut short
    (False, None, 1.0, None),
])
def test_outcomes_are_sorted_into_samples(ok, kind, latency, expected) -> None:
    assert sample_of(at=1.0, ok=ok, latency_ms=latency, error_kind=kind) == expected


def test_the_window_keeps_probes_apart_from_traffic() -> None:
    w = OutcomeWindow(live_size=3, probe_size=2)
    w.add(Sample(0.0, True, 1.0, Source.PROBE))
    for i in range(10):
        w.add(Sample(float(i), True, 2.0))
    w.add(Sample(11.0, True, 3.0, Source.PROBE))
    w.add(Sample(12.0, True, 4.0, Source.PROBE))
    assert [s.at for s in w.samples()] == [7.0, 8.0, 9.0, 11.0, 12.0]


# -- the latency criterion ---------------------------------------------------

def test_a_provider_that_never_fails_but_is_ten_times_slower_than_its_two_peers_is_ejected() -> None:
    result = sweep([view("slow", calls(500, seed=1)), view("a", calls(50, seed=2)), view("b", calls(50, seed=3))],
                   NOW, POLICY)
    [event] = result.events
    assert isinstance(event, Ejected) and event.name == "slow" and event.reason is EjectReason.SLOW_CALLS
    assert event.until == NOW + 30 and event.ejections == 1
    ev = event.evidence
    assert ev.source is Source.LIVE and ev.requests == 40 and ev.slow_calls == 40 and ev.slow_call_rate == 1.0
    assert 450 < ev.median_ms < 550 and 45 < ev.peer_median_ms < 55 and ev.threshold == pytest.approx(5 * ev.peer_median_ms)
    assert result.states["slow"].ejected(NOW) and not result.states["a"].ejected(NOW)
    assert result.panic is False


@pytest.mark.parametrize("seed", range(30))
def test_a_provider_as_slow_as_its_peers_is_never_ejected(seed: int) -> None:
    rng = random.Random(seed)
    views = [view(n, calls(rng.uniform(40, 60), jitter=0.6, seed=seed * 3 + i)) for i, n in enumerate("abc")]
    assert sweep(views, NOW, POLICY).events == []


@pytest.mark.parametrize("ratio, ejected", [(1.0, False), (2.0, False), (3.0, False), (4.5, False), (6.0, True), (10.0, True)])
def test_the_bar_is_five_times_the_peers_median(ratio: float, ejected: bool) -> None:
    result = sweep([view("x", calls(100 * ratio, jitter=0.05)), view("y", calls(100, jitter=0.05))], NOW, POLICY)
    assert bool(result.events) is ejected


def test_no_call_is_slow_under_the_floor_whatever_the_ratio() -> None:
    # a local stand-in answering in 10 ms next to one answering in 1 ms
    assert sweep([view("x", calls(10)), view("y", calls(1))], NOW, POLICY).events == []


def test_too_few_calls_judge_nobody() -> None:
    assert sweep([view("slow", calls(500, n=19)), view("a", calls(50))], NOW, POLICY).events == []   # 20 needed
    assert sweep([view("slow", calls(500)), view("a", calls(50, n=4))], NOW, POLICY).events == []    # a peer needs 5
    assert sweep([view("slow", calls(500))], NOW, POLICY).events == []                              # no peer at all


def test_calls_older_than_the_window_do_not_count() -> None:
    old = calls(500, start=NOW - 200)
    assert sweep([view("slow", old), view("a", calls(50))], NOW, POLICY).events == []


def test_with_no_live_traffic_at_its_peers_the_probes_compare_them() -> None:
    # The seed's ranking sends everything to the best-ranked provider: its
    # peers serve nothing live, but every provider is probed alike.
    slow = calls(500) + calls(400, n=3, source=Source.PROBE, start=NOW - 600, step=60)
    peers = [view(n, calls(40, n=3, source=Source.PROBE, start=NOW - 600, step=60, seed=i)) for i, n in enumerate("ab")]
    [event] = sweep([view("slow", slow), *peers], NOW, POLICY).events
    assert isinstance(event, Ejected) and event.reason is EjectReason.SLOW_CALLS and event.evidence.source is Source.PROBE


def test_probes_are_compared_only_with_peers_probed_the_same_way() -> None:
    # An SMTP probe is a whole session (connect, TLS, AUTH, NOOP, QUIT), a REST
    # provider's one GET: the README walkthrough's SMTP server, as quick as ever,
    # was ejected for probing 5x slower than SendGrid's stand-in, and the first
    # email went out through SendGrid.
    smtp = view("smtp_primary", calls(60, n=5, source=Source.PROBE, start=NOW - 300, step=60), probe_kind="smtp")
    sendgrid = view("sendgrid", calls(4, n=5, source=Source.PROBE, start=NOW - 300, step=60), probe_kind="sendgrid")
    assert sweep([smtp, sendgrid], NOW, POLICY).events == []
    # two SMTP servers are compared by their probes as before
    twin = view("smtp_backup", calls(6, n=5, source=Source.PROBE, start=NOW - 300, step=60), probe_kind="smtp")
    [event] = sweep([smtp, twin, sendgrid], NOW, POLICY).events
    assert isinstance(event, Ejected) and event.name == "smtp_primary" and event.evidence.source is Source.PROBE


def test_only_the_latest_probes_count_so_a_slowdown_shows_soon() -> None:
    # ten quick probes, then three slow ones: the latest five decide
    probes = calls(50, n=10, source=Source.PROBE, start=NOW - 600, step=15) + \
        calls(500, n=3, source=Source.PROBE, start=NOW - 45, step=15)
    peers = [view(n, calls(50, n=13, source=Source.PROBE, start=NOW - 600, step=40, seed=i)) for i, n in enumerate("ab")]
    [event] = sweep([view("x", probes), *peers], NOW, POLICY).events
    assert event.evidence.source is Source.PROBE and event.evidence.requests == 5 and event.evidence.slow_calls == 3
    assert sweep([view("x", probes), *peers], NOW, OutlierPolicy(probe_recent=13)).events == []


def test_live_calls_are_never_compared_with_probes() -> None:
    # the slow one's live calls against the peers' quick probes: no verdict
    peers = [view(n, calls(40, n=3, source=Source.PROBE, start=NOW - 600, step=60)) for n in "ab"]
    assert sweep([view("slow", calls(500)), *peers], NOW, POLICY).events == []


def test_live_evidence_wins_over_probes() -> None:
    # live calls say it is as fast as its peer; its probes are slow: live decides
    x = calls(50) + calls(900, n=3, source=Source.PROBE, start=NOW - 300, step=60)
    y = calls(50, seed=5) + calls(40, n=3, source=Source.PROBE, start=NOW - 300, step=60)
    assert sweep([view("x", x), view("y", y)], NOW, POLICY).events == []


def test_timeouts_count_as_slow_calls() -> None:
    timeouts = tuple(Sample(NOW - 30 + i, False, 10_000.0) for i in range(30))
    [event] = sweep([view("x", timeouts), view("y", calls(50)), view("z", calls(60))], NOW,
                    OutlierPolicy(fp_enabled=False)).events
    assert isinstance(event, Ejected) and event.reason is EjectReason.SLOW_CALLS


# -- failure percentage and success rate --------------------------------------

def test_a_provider_failing_most_calls_is_ejected_by_failure_percentage() -> None:
    failing = tuple(Sample(NOW - 30 + i, i % 10 == 0, 50.0 if i % 10 == 0 else None) for i in range(40))   # 90% fail
    [event] = sweep([view("x", failing), view("y", calls(50))], NOW, POLICY).events
    assert isinstance(event, Ejected) and event.reason is EjectReason.FAILURE_PERCENTAGE
    assert event.evidence.failures == 36 and event.evidence.requests == 40 and event.evidence.threshold == 85.0


def test_failing_at_a_high_but_ordinary_rate_is_left_to_health() -> None:
    assert sweep([view("x", calls(50, fail_every=2)), view("y", calls(50))], NOW, POLICY).events == []   # 50% fail


def test_failure_percentage_needs_two_providers_with_enough_calls() -> None:
    failing = tuple(Sample(NOW - 30 + i, False, None) for i in range(40))
    assert sweep([view("x", failing), view("y", calls(50, n=10))], NOW, POLICY).events == []


def test_success_rate_against_the_peers_needs_five_providers() -> None:
    # Of n values none lies more than sqrt(n-1) standard deviations below
    # their mean: with four providers even one failing every call is not a
    # success-rate outlier at a factor of 1.9; with five it is.
    policy = OutlierPolicy(fp_enabled=False, slow_enabled=False)
    failing = tuple(Sample(NOW - 30 + i * 0.1, False, None) for i in range(100))
    good = [view(f"p{i}", calls(50, n=100, step=0.1, seed=i)) for i in range(4)]
    assert sweep([view("x", failing), *good[:3]], NOW, policy).events == []
    [event] = sweep([view("x", failing), *good], NOW, policy).events
    assert isinstance(event, Ejected) and event.reason is EjectReason.SUCCESS_RATE
    assert event.evidence.success_rate == 0.0 and event.evidence.threshold == pytest.approx(0.8 - 1.9 * 0.4)


def test_success_rate_ejects_below_mean_minus_factor_stdev() -> None:
    policy = OutlierPolicy(fp_enabled=False, slow_enabled=False)
    half = calls(50, n=100, step=0.1, fail_every=2)
    views = [view("x", half), *(view(f"p{i}", calls(50, n=100, step=0.1, seed=i)) for i in range(5))]
    [event] = sweep(views, NOW, policy).events
    assert event.name == "x" and event.evidence.success_rate == 0.5 and event.evidence.threshold == pytest.approx(0.5627, abs=1e-3)


# -- ejection time ----------------------------------------------------------

def test_ejection_time_grows_with_each_ejection_in_a_row_up_to_the_maximum() -> None:
    assert [ejection_s(n, POLICY) for n in (1, 2, 3, 10, 11, 50)] == [30, 60, 90, 300, 300, 300]


def test_time_served_returns_it_and_what_it_did_before_no_longer_counts() -> None:
    peers = [view("a", calls(50, seed=2)), view("b", calls(50, seed=3))]
    first = sweep([view("slow", calls(500)), *peers], NOW, POLICY)
    state = first.states["slow"]
    # while ejected it is not judged again: nothing happens
    assert sweep([view("slow", calls(500), **msgspec.structs.asdict(state)), *peers], NOW + 10, POLICY).events == []
    # once served, it returns; its old slow calls do not eject it again
    back = sweep([view("slow", calls(500), **msgspec.structs.asdict(state)), *peers], NOW + 30, POLICY)
    assert kinds(back.events) == [("Returned", "slow")]
    assert back.events[0].reason is ReturnReason.TIME_SERVED and back.events[0].ejected_at == NOW
    assert back.states["slow"].counted_since == NOW + 30 and back.states["slow"].ejections == 1
    # slow again after it returned: ejected for twice as long
    again = sweep([view("slow", calls(500, start=NOW + 31), **msgspec.structs.asdict(back.states["slow"])),
                   view("a", calls(50, start=NOW + 31)), view("b", calls(50, start=NOW + 31))], NOW + 60, POLICY)
    [event] = again.events
    assert isinstance(event, Ejected) and event.ejections == 2 and event.until == NOW + 60 + 60
    assert again.states["slow"].total_ejections == 2


def test_the_multiplier_stops_growing_at_the_maximum() -> None:
    state = EjectionState(ejections=10, total_ejections=10)
    [event] = sweep([view("slow", calls(500), **msgspec.structs.asdict(state)), view("a", calls(50))], NOW, POLICY).events
    assert event.ejections == 10 and event.until == NOW + 300


def test_a_provider_judged_well_pays_its_multiplier_down_one_per_sweep() -> None:
    state = dict(ejections=3, total_ejections=3, counted_since=NOW - 60)
    result = sweep([view("x", calls(50), **state), view("y", calls(55))], NOW, POLICY)
    assert result.events == [] and result.states["x"].ejections == 2
    # a sweep without enough calls to judge it changes nothing
    idle = sweep([view("x", calls(50, n=3), **state), view("y", calls(55))], NOW, POLICY)
    assert idle.states["x"].ejections == 3


# -- the cap and the panic mode ------------------------------------------------

@pytest.mark.parametrize("total, percent, one, expected", [
    (0, 50, True, 0), (1, 50, True, 0), (2, 50, True, 1), (3, 50, True, 1), (4, 50, True, 2), (10, 50, True, 5),
    (3, 10, True, 1), (3, 10, False, 0), (20, 10, False, 2), (3, 100, True, 2),
])
def test_max_ejected(total: int, percent: float, one: bool, expected: int) -> None:
    assert max_ejected(total, OutlierPolicy(max_ejection_percent=percent, always_eject_one=one)) == expected


def test_the_cap_spares_the_lesser_outlier_and_says_so() -> None:
    worse = tuple(Sample(NOW - 30 + i, False, None) for i in range(40))                       # 100% fail
    bad = tuple(Sample(NOW - 30 + i, i % 10 == 0, 50.0 if i % 10 == 0 else None) for i in range(40))  # 90% fail
    result = sweep([view("bad", bad), view("worse", worse), view("good", calls(50))], NOW, POLICY)
    assert kinds(result.events) == [("Ejected", "worse"), ("Spared", "bad")]
    spared = result.events[1]
    assert isinstance(spared, Spared) and spared.reason is SpareReason.MAX_EJECTED
    assert spared.outlier is EjectReason.FAILURE_PERCENTAGE and spared.ejected == 1 and spared.max_ejected == 1
    assert not result.states["bad"].ejected(NOW)


def test_the_cap_counts_providers_already_ejected() -> None:
    out = dict(ejections=1, total_ejections=1, ejected_at=NOW - 5, ejected_until=NOW + 25, reason=EjectReason.SLOW_CALLS)
    result = sweep([view("x", (), **out), view("slow", calls(500)), view("a", calls(50))], NOW, POLICY)
    assert kinds(result.events) == [("Spared", "slow")]


def test_an_ejected_provider_is_no_peer() -> None:
    # x's slow calls would raise the bar for b (median of 500 and 50): they do not count
    out = dict(ejections=1, total_ejections=1, ejected_at=NOW - 5, ejected_until=NOW + 25, reason=EjectReason.SLOW_CALLS)
    result = sweep([view("x", calls(500), **out), view("a", calls(50)), view("b", calls(300))], NOW,
                   OutlierPolicy(max_ejection_percent=100))
    assert kinds(result.events) == [("Ejected", "b"), ("PanicStarted", "")]   # one of three left in rotation
    assert result.events[0].evidence.peer_median_ms < 60


def test_failures_go_before_slowness_when_only_one_may_go() -> None:
    failing = tuple(Sample(NOW - 30 + i, False, None) for i in range(40))
    result = sweep([view("slow", calls(900)), view("failing", failing), view("a", calls(50)), view("b", calls(50))],
                   NOW, OutlierPolicy(max_ejection_percent=25))
    assert kinds(result.events) == [("Ejected", "failing"), ("Spared", "slow")]


def test_the_last_provider_in_rotation_is_never_ejected() -> None:
    failing = tuple(Sample(NOW - 30 + i, False, None) for i in range(40))
    result = sweep([view("only", failing)], NOW, OutlierPolicy(fp_minimum_hosts=1))
    assert kinds(result.events) == [("Spared", "only")]


def test_panic_starts_when_too_few_providers_are_in_rotation_and_ends_when_enough_are() -> None:
    # two providers: the slow one ejected, the other cooling down for its health
    result = sweep([view("slow", calls(500)), view("a", calls(50), available=False)], NOW, POLICY)
    assert kinds(result.events) == [("Ejected", "slow"), ("PanicStarted", "")] and result.panic
    assert result.events[1] == PanicStarted(at=NOW, available=0, total=2)
    later = sweep([view("slow", (), **msgspec.structs.asdict(result.states["slow"])), view("a", ())], NOW + 1, POLICY,
                  was_panic=True)
    assert later.events == [PanicEnded(at=NOW + 1, available=1, total=2)] and not later.panic


def test_in_panic_below_the_threshold_only() -> None:
    assert not in_panic(2, 1, POLICY)        # 50% in rotation: at the threshold, not below
    assert in_panic(3, 2, POLICY) and in_panic(2, 2, POLICY)
    assert not in_panic(0, 0, POLICY) and not in_panic(3, 2, OutlierPolicy(panic_threshold_percent=0))


# -- routing ----------------------------------------------------------------

EJECTED = EjectionState(ejections=1, ejected_at=NOW - 1, ejected_until=NOW + 29, reason=EjectReason.SLOW_CALLS)


def test_route_demotes_the_ejected() -> None:
    r = who_to_demote({"slow": EJECTED, "a": EjectionState(), "b": EjectionState()}, NOW, (), POLICY)
    assert r.ejected == {"slow"} and r.demoted == {"slow"} and not r.panic


def test_route_in_panic_disregards_ejections() -> None:
    r = who_to_demote({"slow": EJECTED, "a": EjectionState()}, NOW, {"a"}, POLICY)
    assert r.ejected == {"slow"} and r.demoted == frozenset() and r.panic


def test_an_ejection_over_between_sweeps_is_over() -> None:
    assert who_to_demote({"slow": EJECTED, "a": EjectionState()}, NOW + 29, (), POLICY).ejected == frozenset()


def test_route_when_disabled_demotes_nobody() -> None:
    r = who_to_demote({"slow": EJECTED, "a": EjectionState()}, NOW, (), OutlierPolicy(enabled=False))
    assert r.demoted == frozenset() and not r.panic


def cand(name: str, index: int, state: Health = Health.HEALTHY, successes: int = 10, **health) -> Candidate:
    return Candidate(name=name, index=index, health=HealthSnapshot(state=state, consecutive_successes=successes, **health))


def test_demoted_providers_are_tried_after_the_rest_but_before_those_cooling_down() -> None:
    cs = [cand("slow", 0, successes=99), cand("a", 1), cand("b", 2, Health.UNHEALTHY, 0, cooldown_until=NOW + 5)]
    assert [c.name for c in demote(by_health, {"slow"})(cs)] == ["a", "b", "slow"]
    plan = plan_attempts(cs, NOW, rank=demote(by_health, {"slow"}))
    assert plan.order == ["a", "slow", "b"]
    assert demote(by_health, ()) is by_health


def test_ejection_skips_carry_the_typed_reason() -> None:
    states = {"slow": EJECTED, "a": EjectionState()}
    [skip] = ejection_skips(who_to_demote(states, NOW, (), POLICY), states, NOW)
    assert skip.name == "slow" and skip.reason is SkipReason.OUTLIER_EJECTED and skip.reason == "outlier_ejected"


# -- turning it off, and the events on the wire ----------------------------------

def test_turning_it_off_returns_every_ejected_provider() -> None:
    result = sweep([view("slow", calls(500), **msgspec.structs.asdict(EJECTED)), view("a", calls(50))], NOW,
                   OutlierPolicy(enabled=False))
    assert result.events == [Returned(name="slow", at=NOW, reason=ReturnReason.DISABLED, ejected_at=NOW - 1)]
    assert not result.states["slow"].ejected(NOW) and not result.panic


def test_events_round_trip_as_a_tagged_union() -> None:
    result = sweep([view("slow", calls(500)), view("a", calls(50), available=False)], NOW, POLICY)
    wire = msgspec.json.encode(result.events)
    assert msgspec.json.decode(wire, type=list[OutlierEvent]) == result.events
    assert b'"type":"Ejected"' in wire and b'"reason":"slow_calls"' in wire
