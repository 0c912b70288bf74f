"""Live faults at the provider (actors/provider/faults.py) and in the audit
log (actors/ops/chaos_audit.py), without Ray: LiveFault on its own, then
ProviderCore with a scripted adapter, a router over in-process providers,
the audit file, the metrics. Time is a fake clock: a fault's delay is slept
on it, taking no real time."""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from actors.cli.render import audit_line, status_table
from actors.errors import ErrorKind
from actors.messages import CallContext, CapabilityStatus, StatusReport
from actors.ops.audit import AuditLog
from actors.ops.chaos_audit import ChaosAudit
from actors.ops.metrics import MemoryRecorder
from actors.ops.observers import ProviderOps
from actors.payloads import SendEmail
from actors.policy.chaos.faults import ChaosPolicy, Fault, FaultCleared, FaultInjected, new_fault
from actors.policy.health import Health
from actors.provider.core import ProviderCore
from actors.provider.faults import NOTHING, Acted, LiveFault
from actors.provider.listener import ProviderListener
from tests.unit.fakes import Clock, Heard, ScriptedAdapter, provider_spec
from tests.unit.harness import EMAIL, Harness

PAYLOAD = SendEmail(to=["a@b.co"], subject="s", text="t")
OK = {"message_id": "m"}


def fault(provider: str = "p", now: float = 1000.0, for_s: float = 5.0, **kw: Any) -> Fault:
    kw.setdefault("policy", ChaosPolicy(allowed=True))
    return new_fault("email_sending", provider, duration_s=for_s, now=now, by="ann@ops-1", fault_id="f1", **kw)


def core_with(script: list[Any], clock: Clock | None = None,
              listeners: list[ProviderListener] | None = None) -> ProviderCore:
    return ProviderCore(provider_spec(), ScriptedAdapter(script), clock=clock or Clock(), listeners=listeners or [])


# --- LiveFault on its own ---------------------------------------------------------------------------

def before(live: LiveFault, timeout_s: float = 1.0) -> Acted | BaseException:
    try:
        return asyncio.run(live.before(timeout_s))
    except Exception as exc:  # noqa: BLE001 - the injected failure is what some tests look at
        return exc


def test_no_fault_does_nothing_and_tells_nobody() -> None:
    clock, heard = Clock(), Heard()
    live = LiveFault("provider:email_sending:p", clock, heard)
    assert before(live) is NOTHING and clock.slept == [] and heard.events == []
    assert live.current() is None and live.shown() is None


def test_a_delay_is_slept_on_the_clock_and_told_to_the_listener() -> None:
    clock, heard = Clock(), Heard()
    live = LiveFault("p", clock, heard)
    live.set(fault(latency_ms=250))
    assert before(live) == Acted(injected=True, delay_s=0.25)
    assert clock.slept == [0.25] and heard.events == [("on_fault_applied", "delay")]


def test_a_failure_is_raised_after_its_delay_and_was_never_sent() -> None:
    clock, heard = Clock(), Heard()
    live = LiveFault("p", clock, heard, rng=random.Random(1))
    live.set(fault(fail_rate=1.0, latency_ms=100, error="rate_limited", retry_after_s=7, for_s=60))
    exc = before(live)
    assert isinstance(exc, Exception) and exc.kind is ErrorKind.RATE_LIMITED  # type: ignore[attr-defined]
    assert exc.retry_after_s == 7 and exc.maybe_delivered is False and exc.injected  # type: ignore[attr-defined]
    assert clock.slept == [0.1] and heard.events == [("on_fault_applied", "fail")]


def test_a_delay_past_the_attempt_is_a_timeout_at_the_attempts_end() -> None:
    clock = Clock()
    live = LiveFault("p", clock, Heard())
    live.set(fault(latency_ms=5000))
    exc = before(live, timeout_s=0.5)
    assert exc.kind is ErrorKind.TIMEOUT and "+5000 ms" in str(exc) and clock.slept == [0.5]  # type: ignore[union-attr]


def test_the_draw_is_the_faults_own_random_source() -> None:
    outcomes = []
    for _ in range(2):
        live = LiveFault("p", Clock(), Heard(), rng=random.Random(42))
        live.set(fault(fail_rate=0.5))
        outcomes.append([isinstance(before(live), Exception) for _ in range(20)])
    assert outcomes[0] == outcomes[1] and True in outcomes[0] and False in outcomes[0]


def test_a_fault_expires_on_the_clock_and_is_dropped_at_the_next_look() -> None:
    clock = Clock(1000.0)
    live = LiveFault("p", clock, Heard())
    assert live.set(fault(fail_rate=1.0, for_s=5)) is None
    clock.now = 1004.999
    assert live.current() is not None and isinstance(before(live), Exception)
    clock.now = 1005.0
    assert before(live) is NOTHING and live.fault is None and live.current() is None


def test_a_listener_that_raises_is_isolated_by_the_cores_listeners() -> None:
    class Broken(Heard):
        def on_fault_applied(self, action: str) -> None:
            raise RuntimeError("metrics down")

    heard = Heard()
    core = core_with([OK], listeners=[Broken(), heard])
    core.faults.set(fault(latency_ms=10))
    assert call(core).ok and heard.of("on_fault_applied") == ["delay"]


# --- through the provider core ---------------------------------------------------------------------


def call(core: ProviderCore, **kw: Any):
    ctx = CallContext(request_id="r1", method="send_email", **{"timeout_s": 1.0, **kw})
    return asyncio.run(core.call("send_email", PAYLOAD, ctx))


def test_a_fault_fails_calls_without_calling_the_adapter() -> None:
    core = core_with([OK] * 3)
    core.faults.set(fault(fail_rate=1.0))
    replies = [call(core) for _ in range(3)]
    assert [(r.ok, r.error_kind, r.injected, r.maybe_delivered) for r in replies] == [
        (False, ErrorKind.TRANSIENT, True, False)] * 3
    assert core.adapter.calls == []                              # nothing was sent
    assert core.health.total_failures == 3 and core.health.state is Health.UNHEALTHY  # health reacts as to a real one
    assert "injected fault f1" in (replies[0].error or "")


def test_rate_limited_carries_its_retry_after_and_crashed_is_its_own_kind() -> None:
    core = core_with([])
    core.faults.set(fault(error="rate_limited", retry_after_s=30, for_s=60))
    reply = call(core)
    assert reply.error_kind is ErrorKind.RATE_LIMITED and reply.retry_after_s == 30
    assert core.health.throttled_until == 1030
    core.faults.set(fault(error="crashed"))
    assert call(core).error_kind is ErrorKind.CRASHED


def test_a_delay_within_the_attempt_then_the_adapter_answers() -> None:
    clock = Clock(virtual=True)
    core = core_with([OK], clock=clock)
    core.faults.set(fault(latency_ms=300))
    reply = call(core, timeout_s=1.0)
    assert reply.ok and reply.injected and clock.slept == [0.3] and len(core.adapter.calls) == 1
    assert reply.latency_ms == pytest.approx(300.0)             # the delay counts in the attempt's latency


def test_a_delay_past_the_attempt_timeout_becomes_a_timeout_bounded_by_it() -> None:
    clock = Clock()
    core = core_with([OK], clock=clock)
    core.faults.set(fault(latency_ms=5000))
    reply = call(core, timeout_s=0.5)
    assert clock.slept == [0.5]                                  # bounded by the attempt's time, not 5 s
    assert (reply.ok, reply.error_kind, reply.injected, reply.maybe_delivered) == (False, ErrorKind.TIMEOUT, True, False)
    assert core.adapter.calls == []


def test_without_a_fault_or_at_rate_zero_nothing_is_injected() -> None:
    core = core_with([OK, OK])
    assert call(core).injected is False
    core.faults.set(fault(fail_rate=0.5))
    core.faults.rng = random.Random(0)  # draws 0.844...: passes
    reply = call(core)
    assert reply.ok and not reply.injected and len(core.adapter.calls) == 2


def test_the_fault_ends_by_itself_at_its_expiry() -> None:
    clock = Clock(1000.0)
    core = core_with([OK], clock=clock)
    core.faults.set(fault(fail_rate=1.0, for_s=5))
    assert core.status().fault is not None and core.status().fault.error is ErrorKind.TRANSIENT
    assert not call(core).ok
    clock.now = 1005.0
    reply = call(core)
    assert reply.ok and not reply.injected and core.faults.fault is None and core.status().fault is None


def test_set_returns_the_fault_it_replaced_and_none_clears() -> None:
    core = core_with([])
    first = fault(fail_rate=1.0)
    assert core.faults.set(first) is None
    assert core.faults.set(None) == first and core.status().fault is None


def test_status_shows_the_fault_in_its_json_shape() -> None:
    core = core_with([])
    core.faults.set(fault(fail_rate=0.3, latency_ms=50))
    shown = core.status().to_dict()["fault"]
    assert shown == {"id": "f1", "fail_rate": 0.3, "error": "transient", "latency_ms": 50.0, "expires_at": 1005.0,
                     "injected_by": "ann@ops-1"}


def test_an_injected_timeout_on_a_keyed_send_is_never_parked_and_journaled_failed() -> None:
    h = Harness({"a": [OK], "b": [OK]})
    h.providers["a"].faults.set(fault("a", error="timeout", now=h.clock()))
    res = h.invoke(EMAIL, idempotency_key="k1")
    assert res.ok and res.provider == "b" and res.outbox_id is None
    assert [(a.provider, a.error_kind, a.injected, a.maybe_delivered) for a in res.attempts] == [
        ("a", ErrorKind.TIMEOUT, True, False), ("b", None, False, False)]
    assert h.calls("a") == 0
    [entry] = h.db.journal_find_many("email_sending", ["k1"], provider="a")["k1"]
    assert entry.state == "failed"                               # nothing was sent: not "unknown"


def test_with_no_other_provider_an_injected_timeout_fails_the_request_but_never_parks_it() -> None:
    h = Harness({"a": [OK] * 10})
    h.providers["a"].faults.set(fault("a", error="timeout", now=h.clock(), for_s=3600))
    res = h.invoke(EMAIL, idempotency_key="k2")
    assert not res.ok and res.error.kind is not ErrorKind.OUTCOME_UNKNOWN and res.outbox_id is None
    assert h.calls("a") == 0 and all(a.injected and not a.maybe_delivered for a in res.attempts)


def test_the_router_audits_injected_cleared_and_expired(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, "email_sending")
    chaos = ChaosAudit(log)
    f = fault(fail_rate=1.0, for_s=5)
    chaos.note(FaultInjected(fault=f))
    g = fault("q", error="auth", for_s=60)
    chaos.note(FaultInjected(fault=g))
    chaos.note(FaultCleared(fault=g, at=1010.0, by="bob@ops-2"))
    assert chaos.sweep(1004.0) == []
    assert [e.fault.id for e in chaos.sweep(1005.0)] == ["f1"]
    assert chaos.sweep(2000.0) == [] and chaos.book.faults == {}
    log.flush()
    records = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [(r["type"], r["event"], r["provider"], r["by"], r["at"]) for r in records] == [
        ("chaos", "injected", "p", "ann@ops-1", 1000.0), ("chaos", "injected", "q", "ann@ops-1", 1000.0),
        ("chaos", "cleared", "q", "bob@ops-2", 1010.0), ("chaos", "expired", "p", None, 1005.0)]
    assert records[0]["fault"]["fail_rate"] == 1.0 and records[0]["fault"]["error"] == "transient"
    assert "chaos expired fault f1" in audit_line(records[3])


def test_a_restarted_router_adopts_the_faults_its_providers_hold_and_audits_only_their_expiry(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, "email_sending")
    chaos = ChaosAudit(log)
    f = fault(fail_rate=1.0, for_s=5)
    chaos.adopt(f)
    chaos.adopt(f)
    assert [e.fault.id for e in chaos.sweep(1005.0)] == ["f1"]
    log.flush()
    assert [json.loads(line)["event"] for line in log.path.read_text().splitlines()] == ["expired"]


def test_metrics_count_what_a_fault_did_and_show_it_active() -> None:
    recorder = MemoryRecorder()
    ops = ProviderOps(provider_spec(), lambda: core.status(), recorder=recorder)
    core = core_with([OK], listeners=[ops])
    core.faults.set(fault(latency_ms=10))
    call(core)
    core.faults.set(fault(fail_rate=1.0))
    call(core)
    call(core)
    asyncio.run(ops.tick())
    assert recorder.counter("aicmo_chaos_applied", action="delay") == 1
    assert recorder.counter("aicmo_chaos_applied", action="fail") == 2
    active = {dict(t)["provider"]: v for (n, t), v in recorder.gauges.items() if n == "aicmo_chaos_fault_active"}
    assert active == {"p": 1}
    core.faults.set(None)
    asyncio.run(ops.tick())
    active = {dict(t)["provider"]: v for (n, t), v in recorder.gauges.items() if n == "aicmo_chaos_fault_active"}
    assert active == {"p": 0}


def test_status_prints_a_chaos_line() -> None:
    from rich.console import Console

    core = core_with([])
    core.faults.set(fault(fail_rate=0.3, for_s=3600, now=__import__("time").time()))
    report = StatusReport(namespace="n", generated_at=0, capabilities=[
        CapabilityStatus(capability="email_sending", providers=[core.status()])])
    console = Console(record=True, width=300)
    status_table(report, console)
    text = console.export_text()
    assert "chaos: 1 active fault (email_sending/p: 30% transient until" in text and "by ann@ops-1" in text


@pytest.mark.parametrize("raw", [{"chaos": {"allowed": True}}, {}])
def test_the_config_reaches_the_spec(raw: dict) -> None:
    from actors.config import parse_config
    from actors.specs import build_spec

    cfg = parse_config({**raw, "capabilities": {"email_sending": {"providers": [
        {"name": "a", "adapter": "simulated"}]}}}, env={})
    spec = build_spec(cfg)
    assert spec.chaos.allowed is (raw != {})  # off unless allowed
    assert all(p.chaos == spec.chaos for c in spec.capabilities for p in c.providers)  # each provider checks too


class _Remote:
    """An actor method reached as `.remote(...)`, answered by a plain function, awaited like Ray's refs."""

    def __init__(self, fn: Any):
        self._fn = fn

    def remote(self, *args: Any) -> Any:
        async def answer() -> Any:
            return self._fn(*args)

        return answer()


class _Actors:
    """Provider cores and routers' ChaosAudits behind the names the supervisor looks up."""

    def __init__(self, spec: Any) -> None:
        from actors.names import provider_name, router_name

        self.cores = {provider_name(c.capability, p.name): core_with([]) for c in spec.capabilities for p in c.providers}
        self.audits = {router_name(c.capability): ChaosAudit(None) for c in spec.capabilities}
        self.events: list[Any] = []

    def __call__(self, name: str) -> Any:
        if name in self.cores:
            faults = self.cores[name].faults
            return type("P", (), {"set_fault": _Remote(faults.set), "fault": _Remote(faults.current)})()
        audit = self.audits[name]
        return type("R", (), {"chaos_event": _Remote(lambda e: (self.events.append(e), audit.note(e)))})()


def _gateway_spec(**chaos: Any) -> Any:
    from actors.config import parse_config
    from actors.specs import build_spec

    return build_spec(parse_config({"chaos": {"allowed": True, **chaos}, "capabilities": {"email_sending": {"providers": [
        {"name": "p", "adapter": "simulated"}, {"name": "outbox", "adapter": "outbox"}]}}}, env={}))


def test_the_supervisor_sets_lists_and_clears_faults_through_the_actors() -> None:
    from actors.supervisor import chaos_control

    spec = _gateway_spec()
    actors = _Actors(spec)
    assert chaos_control.known_providers(spec) == {"email_sending": ["p"]}  # never the outbox
    f = fault(fail_rate=1.0, for_s=3600, now=__import__("time").time())
    event = asyncio.run(chaos_control.inject(spec, f, actors, f.injected_at))
    assert event == FaultInjected(fault=f) and actors.events == [event]
    assert asyncio.run(chaos_control.faults(spec, actors)) == [f]
    cleared = asyncio.run(chaos_control.clear(spec, 2000.0, "bob@ops-2", actors, "email_sending"))
    assert [(e.fault.id, e.by) for e in cleared] == [("f1", "bob@ops-2")] and actors.events[-1] == cleared[0]
    assert asyncio.run(chaos_control.faults(spec, actors)) == []
    assert asyncio.run(chaos_control.clear(spec, 2000.0, "bob@ops-2", actors)) == []


@pytest.mark.parametrize(("chaos", "provider", "says"), [
    ({"allowed": False}, "p", "fault injection is forbidden by this gateway's config (chaos.allowed: false)"),
    ({}, "outbox", "no provider 'outbox' under capability 'email_sending'"),
    ({"max_duration_s": 60}, "p", "--for must be more than 0 and at most 60 s"),
])
def test_the_supervisor_checks_a_fault_against_the_deployed_config(chaos: dict, provider: str, says: str) -> None:
    from actors.errors import InvalidFault
    from actors.supervisor import chaos_control

    spec = _gateway_spec(**chaos)
    actors = _Actors(spec)
    with pytest.raises(InvalidFault, match=re.escape(says)):
        asyncio.run(chaos_control.inject(spec, fault(provider, fail_rate=1.0, for_s=600), actors, 1000.0))
    assert actors.events == [] and all(core.faults.fault is None for core in actors.cores.values())
