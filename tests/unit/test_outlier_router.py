"""Outlier ejection wired into a router (actors/router/ejection.py), with
in-process providers (the Harness) and a clock that moves only when told:
samples from attempts and probes, the sweep, the plan's demotion, panic,
status, audit records and metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.cli.render import audit_line
from actors.config import parse_config
from actors.errors import ErrorKind, RateLimited, TransientError
from actors.messages import ProviderStatus
from actors.ops.audit import AuditLog, outlier_record
from actors.policy.health import Health, HealthSnapshot
from actors.policy.outliers.detection import EjectReason, Ejected, PanicStarted, Sample, Source
from actors.policy.skips import SkipReason
from actors.provider.core import ProviderCore
from actors.specs import build_spec
from tests.ops.helpers import wired
from tests.unit.fakes import Clock, ScriptedAdapter
from tests.unit.harness import Harness


def probes(at: float, latency_ms: float, n: int = 5) -> list[Sample]:
    return [Sample(at - n + i, True, latency_ms, Source.PROBE) for i in range(n)]


def with_slow_probes(h: Harness, slow: str = "a", fast_ms: float = 10.0, slow_ms: float = 100.0) -> list[Any]:
    """Probes as the provider actors would report them (a 10x slower), then one sweep."""
    now = h.clock()
    for name in h.router.outliers.windows:
        assert h.router.outliers.probes(name, probes(now, slow_ms if name == slow else fast_ms)) == 5
    return h.router.outliers.sweep(h.router.seen.candidates(now))


def test_a_provider_ten_times_slower_by_its_probes_is_ejected_and_tried_after_the_others() -> None:
    h = Harness({"a": [], "b": [], "c": []})
    assert h.invoke().provider == "a"  # the seed's ranking: the primary first
    events = with_slow_probes(h)
    assert [(type(e), e.name, e.reason) for e in events] == [(Ejected, "a", EjectReason.SLOW_CALLS)]
    assert events[0].evidence.source is Source.PROBE and events[0].until == h.clock() + 30.0
    res = h.invoke()
    assert res.provider != "a" and [x.provider for x in res.attempts] == [res.provider]
    plan = h.router.plan_now()
    assert plan.order[-1] == "a" and [(s.name, s.reason) for s in plan.deferred] == [("a", SkipReason.OUTLIER_EJECTED)]
    assert "a" not in h.router.direct_order()


def test_an_ejected_provider_is_never_dropped_it_saves_a_request_every_other_failed() -> None:
    h = Harness({"a": [], "b": [TransientError("b down")], "c": [TransientError("c down")]}, retry_rounds=0)
    with_slow_probes(h)
    res = h.invoke()
    assert res.ok and res.provider == "a"
    assert [x.provider for x in res.attempts][-1] == "a" and len(res.attempts) == 3


def test_in_panic_ejections_are_ignored() -> None:
    h = Harness({"a": [], "b": []})
    h.clock.now += 1
    # b out for its health (cooling down): with a ejected, fewer than half would be in rotation.
    h.router.seen.views["b"].health = HealthSnapshot(state=Health.UNHEALTHY, cooldown_until=h.clock() + 60,
                                                     last_checked=h.clock())
    now = h.clock()
    h.router.outliers.probes("a", probes(now, 100.0))
    h.router.outliers.probes("b", probes(now, 10.0))
    events = h.router.outliers.sweep(h.router.seen.candidates(now))
    assert [type(e) for e in events] == [Ejected, PanicStarted] and h.router.outliers.panic
    res = h.invoke()
    assert res.provider == "a" and res.attempts[0].provider == "a"  # not demoted in panic
    assert h.router.ranked({}).panic


def test_providers_alike_are_never_ejected() -> None:
    h = Harness({"a": [], "b": [], "c": []})
    for _ in range(5):
        h.clock.now += 10
        assert with_slow_probes(h, slow_ms=12.0) == []
    for _ in range(30):
        h.invoke()
    assert h.router.outliers.sweep(h.router.seen.candidates(h.clock())) == []
    assert not any(st.ejected_until for st in h.router.outliers.states.values())


def test_live_samples_come_from_attempts_not_from_unreachable_actors_rate_limits_or_dry_runs() -> None:
    h = Harness({"a": [TransientError("down")], "b": [], "c": [], "outbox": []}, retry_rounds=0)
    windows = h.router.outliers.windows
    h.invoke()  # a fails (a sample), b serves (a sample)
    assert [s.ok for s in windows["a"].samples()] == [False] and [s.ok for s in windows["b"].samples()] == [True]
    h.clock.now += 120
    h.dead.add("b")  # b's actor died: not a sample of b
    before = {n: len(w.samples()) for n, w in windows.items()}
    h.invoke()
    after = {n: len(w.samples()) for n, w in windows.items()}
    assert after["b"] == before["b"]
    assert "outbox" not in windows  # the outbox is no peer


def test_a_dry_run_and_a_rate_limit_are_no_samples() -> None:
    h = Harness({"a": [RateLimited("slow down", retry_after_s=1)], "b": []}, retry_rounds=0)
    res = h.invoke()
    assert res.attempts[0].error_kind is ErrorKind.RATE_LIMITED
    assert h.router.outliers.windows["a"].samples() == ()
    n = len(h.router.outliers.windows["b"].samples())
    assert h.invoke(dry_run=True).ok
    assert len(h.router.outliers.windows["b"].samples()) == n


def test_status_shows_ejected_until_reason_and_the_multiplier() -> None:
    h = Harness({"a": [], "b": [], "c": []})
    with_slow_probes(h)
    statuses = {n: ProviderStatus(name=n, capability="email_sending", adapter="simulated") for n in "abc"}
    cap = h.router.ranked(statuses)
    by = {p.name: p for p in cap.providers}
    assert by["a"].ejected_until == h.clock() + 30 and by["a"].ejection_reason == "slow_calls" and by["a"].ejections == 1
    assert by["b"].ejected_until is None and by["b"].ejection_reason is None and not cap.panic
    assert cap.providers[-1].name == "a" and "ejected (slow_calls)" in cap.skipped["a"]
    h.clock.now += 31  # served: back in rotation at the next sweep, and at once for a request
    assert by["a"].name == "a" and h.router.ranked(statuses).providers[0].ejected_until is None
    events = h.router.outliers.sweep(h.router.seen.candidates(h.clock()))
    assert [type(e).__name__ for e in events] == ["Returned"]


def test_the_probes_of_a_provider_are_kept_and_reported_in_its_status() -> None:
    adapter = ScriptedAdapter([None, TransientError("probe failed")])
    core = ProviderCore(Harness({"p": []}).spec.providers[0], adapter, clock=Clock())
    asyncio.run(core.probe())
    asyncio.run(core.probe())
    samples = core.status().probe_samples
    assert [(s.ok, s.source) for s in samples] == [(True, Source.PROBE), (False, Source.PROBE)]
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(core.status()), type=ProviderStatus)
    assert decoded.probe_samples == samples


def test_outlier_events_go_to_the_audit_log_and_the_metrics(tmp_path: Path) -> None:
    h, ops, recorder = wired({"a": [], "b": [], "c": []}, tmp_path)
    h.router.outliers = type(h.router.outliers)(h.spec, h.router.clock)
    events = with_slow_probes(h)
    ops.outliers(events, h.router.outliers.ejected(h.clock()), h.router.outliers.panic)
    asyncio.run(ops.flush_audit())
    ops.metrics.flush()
    lines = [json.loads(x) for x in ops.audit.path.read_text().splitlines()]
    assert [(x["type"], x["event"], x["name"], x["reason"]) for x in lines] == [("outlier", "Ejected", "a", "slow_calls")]
    assert lines[0]["evidence"]["source"] == "probe" and lines[0]["capability"] == "email_sending"
    assert "outlier Ejected name=a reason=slow_calls" in audit_line(lines[0])
    assert recorder.counter("aicmo_outlier_ejections", provider="a", reason="slow_calls") == 1
    gauges = {dict(t)["provider"]: v for (n, t), v in recorder.gauges.items() if n == "aicmo_outlier_ejected"}
    assert gauges == {"a": 1.0, "b": 0.0, "c": 0.0}


def test_an_audit_log_takes_decisions_and_outlier_records_alike(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, "email_sending")
    log.observe(outlier_record(PanicStarted(at=1000.0, available=1, total=3), "email_sending"))
    assert log.flush() == 1
    (rec,) = log.tail(5)[0]
    assert rec == {"type": "outlier", "event": "PanicStarted", "capability": "email_sending", "at": 1000.0,
                   "time": "1970-01-01T00:16:40.000Z", "available": 1, "total": 3}


@pytest.mark.parametrize("where", ["top", "capability"])
def test_policy_outlier_is_read_per_capability_into_the_router_spec(where: str) -> None:
    outlier = {"interval_s": 0.5, "base_ejection_time_s": 5, "slow_calls": {"factor": 3}}
    cap: dict[str, Any] = {"providers": [{"name": "a", "adapter": "simulated"}]}
    raw: dict[str, Any] = {"state": {"url": "sqlite:///:memory:"}, "capabilities": {"email_sending": cap}}
    if where == "top":
        raw["policy"] = {"outlier": outlier}
    else:
        cap["policy"] = {"outlier": outlier}
    spec = build_spec(parse_config(raw, env={})).capabilities[0]
    assert (spec.outlier.interval_s, spec.outlier.base_ejection_time_s, spec.outlier.slow_factor) == (0.5, 5.0, 3.0)
    assert spec.outlier.max_ejection_time_s == 300.0  # the rest keep their defaults


def test_ejection_off_never_demotes() -> None:
    h = Harness({"a": [], "b": [], "c": []})
    h.spec = msgspec.structs.replace(h.spec, outlier=dataclasses.replace(h.spec.outlier, enabled=False))
    h.restart_router()
    assert with_slow_probes(h) == []
    assert h.invoke().provider == "a"


def test_the_status_table_shows_an_ejected_provider_and_panic() -> None:
    import time as _time

    from rich.console import Console

    from actors.cli.render import status_table
    from actors.messages import CapabilityStatus, StatusReport

    def printed(panic: bool) -> str:
        console = Console(record=True, width=250)
        slow = ProviderStatus(name="slow", capability="email_sending", adapter="simulated",
                              ejected_until=_time.time() + 25.4, ejection_reason="slow_calls", ejections=1)
        fast = ProviderStatus(name="fast", capability="email_sending", adapter="simulated")
        status_table(StatusReport(namespace="aicmo", generated_at=0.0, capabilities=[
            CapabilityStatus(capability="email_sending", providers=[fast, slow], panic=panic)]), console)
        return console.export_text()

    text = printed(False)
    row = next(line for line in text.splitlines() if " slow " in line)
    assert "EJECTED 25s (slow_calls)" in row and "EJECTED" not in next(line for line in text.splitlines() if " fast " in line)
    assert "panic" not in text and "outlier panic" in printed(True)


def test_the_sweep_task_takes_probes_from_statuses_sweeps_and_publishes_surviving_a_dead_actor() -> None:
    h = Harness({"a": [], "b": [], "c": []})
    outliers = h.router.outliers
    published: list[list[Any]] = []
    rounds = {"n": 0}

    async def sleep(_: float) -> None:
        rounds["n"] += 1
        if rounds["n"] > 2:
            raise asyncio.CancelledError
        h.clock.now += outliers.policy.interval_s

    outliers.clock = dataclasses.replace(h.router.clock, sleep=sleep)

    async def fetch(name: str) -> ProviderStatus:
        if name == "c" and rounds["n"] == 1:
            raise RuntimeError("c's actor did not answer")
        return ProviderStatus(name=name, capability="email_sending", adapter="simulated",
                              probe_samples=probes(h.clock(), 100.0 if name == "a" else 10.0))

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(outliers.run(lambda: h.router.seen.candidates(h.clock()), fetch, published.append))
    # Round 1: c's probes missing, a and b alone (b's 5 probes are a peer): a already ejected.
    assert [[(type(e).__name__, getattr(e, "name", None)) for e in events] for events in published] == [
        [("Ejected", "a")], []]
    assert outliers.sweeps == 2 and outliers.ejected(h.clock()) == {"a": True, "b": False, "c": False}


def test_after_its_ejection_a_provider_is_on_probation_in_the_plan_the_status_and_the_table() -> None:
    from rich.console import Console

    from actors.cli.render import status_table
    from actors.messages import StatusReport

    h = Harness({"a": [], "b": [], "c": []})
    with_slow_probes(h)
    h.clock.now += 31
    statuses = {n: ProviderStatus(name=n, capability="email_sending", adapter="simulated") for n in "abc"}
    between = {p.name: p for p in h.router.ranked(statuses).providers}["a"]   # served, not yet swept
    assert between.on_probation and between.ejected_until is None and between.ejection_reason == "slow_calls"
    events = h.router.outliers.sweep(h.router.seen.candidates(h.clock()))
    assert [type(e).__name__ for e in events] == ["Returned"] and h.router.outliers.states["a"].on_probation
    plan = h.router.plan_now()
    assert plan.order[-1] == "a" and [(s.name, s.reason) for s in plan.deferred] == [("a", SkipReason.OUTLIER_PROBATION)]
    assert h.invoke().provider != "a"
    cap = h.router.ranked(statuses)
    by = {p.name: p for p in cap.providers}
    assert by["a"].on_probation and by["a"].ejected_until is None and by["a"].ejection_reason == "slow_calls"
    assert not by["b"].on_probation and "on probation" in cap.skipped["a"]
    console = Console(record=True, width=250)
    status_table(StatusReport(namespace="aicmo", generated_at=0.0, capabilities=[cap]), console)
    row = next(line for line in console.export_text().splitlines() if " a " in line)
    assert "PROBATION (slow_calls)" in row and "EJECTED" not in row
    # fast probes since the return: the next sweep clears it
    now = h.clock()
    for name in h.router.outliers.windows:
        h.router.outliers.probes(name, [Sample(now + i, True, 10.0, Source.PROBE) for i in range(1, 4)])
    h.clock.now += 10
    events = h.router.outliers.sweep(h.router.seen.candidates(h.clock()))
    assert [(type(e).__name__, e.name) for e in events] == [("Reinstated", "a")]
    assert h.router.plan_now().deferred == [] and not h.router.outliers.states["a"].on_probation
