"""Probation after an ejection (policy.outlier.probation) over hand-built
snapshots: a returned provider stays demoted until a sweep that can judge it
clears it (Reinstated) or ejects it again. No clock, no Ray, no sleep."""

from __future__ import annotations

import msgspec

from actors.ops.audit import outlier_record
from actors.policy.outliers.config import OutlierConfig
from actors.policy.outliers.demotion import ejection_skips, who_to_demote
from actors.policy.outliers.detection import (
    EjectReason,
    EjectionState,
    Evidence,
    OutlierEvent,
    OutlierPolicy,
    ProviderView,
    ReinstateReason,
    Reinstated,
    ReturnReason,
    Returned,
    Sample,
    Source,
    sweep,
)
from actors.policy.skips import SkipReason

NOW = 10_000.0
POLICY = OutlierPolicy()
NO_PROBATION = OutlierPolicy(probation=False)
# Ejected 30 s ago for 30 s (its first ejection): served at NOW.
SERVED = EjectionState(ejections=1, total_ejections=1, ejected_at=NOW - 30, ejected_until=NOW,
                       reason=EjectReason.SLOW_CALLS, counted_since=None)


def probes(ms: float, start: float, n: int = 3, step: float = 5.0) -> tuple[Sample, ...]:
    return tuple(Sample(start + i * step, True, ms, Source.PROBE) for i in range(n))


def views(x: EjectionState, x_samples: tuple[Sample, ...] = (), peers_from: float = NOW - 60) -> list[ProviderView]:
    """x, and two peers a and b with fast probes (8 of them, every 5 s from peers_from)."""
    return [ProviderView(name="x", samples=x_samples, state=x),
            ProviderView(name="a", samples=probes(50, peers_from, 8)),
            ProviderView(name="b", samples=probes(55, peers_from, 8))]


def kinds(events: list[OutlierEvent]) -> list[tuple[str, str]]:
    return [(type(e).__name__, getattr(e, "name", "")) for e in events]


def returned(policy: OutlierPolicy = POLICY) -> EjectionState:
    # x's slow probes from before its ejection are in its window: they no longer count.
    result = sweep(views(SERVED, probes(500, NOW - 60, 5)), NOW, policy)
    assert result.events == [Returned(name="x", at=NOW, reason=ReturnReason.TIME_SERVED, ejected_at=NOW - 30)]
    return result.states["x"]


def test_a_returned_provider_is_demoted_until_a_judged_sweep_clears_it() -> None:
    st = returned()
    assert st.on_probation and st.reason is EjectReason.SLOW_CALLS and st.counted_since == NOW
    assert not st.ejected(NOW) and st.returned_from == NOW - 30
    r = who_to_demote({"x": st, "a": EjectionState(), "b": EjectionState()}, NOW + 1, (), POLICY)
    assert r.ejected == frozenset() and r.probation == {"x"} and r.demoted == {"x"} and not r.panic
    [skip] = ejection_skips(r, {"x": st, "a": EjectionState(), "b": EjectionState()}, NOW + 1)
    assert skip.name == "x" and skip.reason is SkipReason.OUTLIER_PROBATION
    # Two fast probes since the return: too few to judge (probe_volume 3): nothing changes.
    later = sweep(views(st, probes(50, NOW + 1, 2)), NOW + 10, POLICY)
    assert later.events == [] and later.states["x"] == st
    # Three: judged, no outlier: fully back, the multiplier paid down.
    cleared = sweep(views(st, probes(50, NOW + 1, 3)), NOW + 20, POLICY)
    [event] = cleared.events
    assert isinstance(event, Reinstated) and event.name == "x" and event.reason is ReinstateReason.CLEARED
    assert event.ejected_at == NOW - 30 and event.evidence is not None and event.evidence.source is Source.PROBE
    assert event.evidence.slow_calls == 0 and event.evidence.requests == 3
    back = cleared.states["x"]
    assert not back.on_probation and back.reason is None and back.returned_from is None and back.ejections == 0
    assert who_to_demote({"x": back, "a": EjectionState()}, NOW + 21, (), POLICY).demoted == frozenset()


def test_live_calls_can_clear_it_too() -> None:
    st = returned()
    live = tuple(Sample(NOW + 1 + i * 0.1, True, 50.0) for i in range(20))
    peers = [ProviderView(name=n, samples=tuple(Sample(NOW + 1 + i * 0.1, True, 50.0) for i in range(10)))
             for n in ("a", "b")]
    result = sweep([ProviderView(name="x", samples=live, state=st), *peers], NOW + 10, POLICY)
    [event] = result.events
    assert isinstance(event, Reinstated) and event.evidence is not None and event.evidence.source is Source.LIVE
    assert not result.states["x"].on_probation


def test_still_slow_it_is_ejected_again_for_longer() -> None:
    st = returned()
    result = sweep(views(st, probes(500, NOW + 1, 3)), NOW + 20, POLICY)
    assert kinds(result.events) == [("Ejected", "x")]
    again = result.states["x"]
    assert again.ejections == 2 and again.total_ejections == 2 and again.ejected_until == NOW + 20 + 60
    assert not again.on_probation and again.returned_from is None and again.reason is EjectReason.SLOW_CALLS
    # ... and on probation again when that is served.
    assert sweep(views(again), NOW + 80, POLICY).states["x"].on_probation


def test_probation_off_gives_the_provider_back_at_once() -> None:
    st = returned(NO_PROBATION)
    assert not st.on_probation and st.reason is None and st.returned_from is None and st.counted_since == NOW
    r = who_to_demote({"x": st, "a": EjectionState(), "b": EjectionState()}, NOW + 1, (), NO_PROBATION)
    assert r.demoted == frozenset() and r.probation == frozenset()
    # judged later: no Reinstated event, only the multiplier's decay
    later = sweep(views(st, probes(50, NOW + 1, 3)), NOW + 20, NO_PROBATION)
    assert later.events == [] and later.states["x"].ejections == 0


def test_an_ejection_over_between_sweeps_is_on_probation_at_once() -> None:
    states = {"x": SERVED, "a": EjectionState(), "b": EjectionState()}
    r = who_to_demote(states, NOW + 1, (), POLICY)
    assert r.ejected == frozenset() and r.demoted == {"x"}
    assert ejection_skips(r, states, NOW + 1)[0].reason is SkipReason.OUTLIER_PROBATION
    assert who_to_demote(states, NOW + 1, (), NO_PROBATION).demoted == frozenset()


def test_providers_never_ejected_have_no_probation() -> None:
    result = sweep(views(EjectionState(), probes(50, NOW - 20, 3)), NOW, POLICY)
    assert result.events == [] and not any(st.on_probation for st in result.states.values())
    assert who_to_demote(result.states, NOW, (), POLICY).probation == frozenset()


def test_panic_ignores_the_probation_demotion_and_probation_is_in_rotation() -> None:
    st = returned()
    ejected = EjectionState(ejections=1, ejected_at=NOW, ejected_until=NOW + 30, reason=EjectReason.SLOW_CALLS)
    # x on probation, a out for its health, b ejected: one of three in rotation: panic, nobody demoted
    r = who_to_demote({"x": st, "a": EjectionState(), "b": ejected}, NOW + 1, {"a"}, POLICY)
    assert r.panic and r.demoted == frozenset() and r.probation == {"x"}
    # x on probation, a out for its health: x counts as in rotation (50%, no panic), and is demoted
    r = who_to_demote({"x": st, "a": EjectionState()}, NOW + 1, {"a"}, POLICY)
    assert not r.panic and r.demoted == {"x"}
    # the sweep's panic likewise does not count probation as out
    result = sweep([ProviderView(name="x", state=st), ProviderView(name="a", available=False)], NOW + 1, POLICY)
    assert not result.panic and result.events == []


def test_turning_probation_off_reinstates_at_once() -> None:
    st = returned()
    result = sweep(views(st), NOW + 10, NO_PROBATION)
    assert result.events == [Reinstated(name="x", at=NOW + 10, reason=ReinstateReason.DISABLED, ejected_at=NOW - 30)]
    assert not result.states["x"].on_probation and result.states["x"].reason is None
    off = sweep(views(st), NOW + 10, OutlierPolicy(enabled=False))
    assert kinds(off.events) == [("Reinstated", "x")] and not off.states["x"].on_probation


def test_reinstated_round_trips_and_is_audited() -> None:
    event = Reinstated(name="x", at=NOW, reason=ReinstateReason.CLEARED, ejected_at=NOW - 60,
                       evidence=Evidence(source=Source.PROBE, requests=3, slow_calls=0, slow_call_rate=0.0))
    wire = msgspec.json.encode([event])
    assert msgspec.json.decode(wire, type=list[OutlierEvent]) == [event] and b'"type":"Reinstated"' in wire
    record = outlier_record(event, "email_sending")
    assert record["type"] == "outlier" and record["event"] == "Reinstated" and record["reason"] == "cleared"
    assert record["capability"] == "email_sending" and record["evidence"]["source"] == "probe"


def test_the_config_carries_probation() -> None:
    assert OutlierConfig().to_policy().probation is True
    assert OutlierConfig(probation=False).to_policy().probation is False
