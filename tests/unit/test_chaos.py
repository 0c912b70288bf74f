"""Live fault injection, pure: validation, what a fault does to a call with a
seeded random source, expiry, and the book's events."""

from __future__ import annotations

import random

import msgspec
import pytest
from pydantic import ValidationError

from actors.errors import ErrorKind
from actors.policy.chaos.config import ChaosConfig
from actors.policy.chaos.faults import (
    INJECTABLE_KINDS, ChaosAction, ChaosBook, ChaosDecision, ChaosEvent, ChaosPolicy, Fault, FaultCleared,
    FaultExpired, FaultInjected, FaultProblem, InvalidFault, active, apply, clear, expire, inject, new_fault,
)

NOW = 1_000.0
KNOWN = {"email_sending": ["resend", "smtp"], "email_verification": ["zerobounce"]}


def fault(**kw) -> Fault:
    args = dict(duration_s=60, now=NOW, by="ann@ops-1", fault_id="f1", policy=ChaosPolicy(allowed=True))
    args.update(kw)
    return new_fault(args.pop("capability", "email_sending"), args.pop("provider", "resend"), **args)


class Fixed:
    """A random source that returns the values it is given, in order."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


# -- validation ---------------------------------------------------------------

def test_a_valid_fault() -> None:
    f = fault(fail_rate=0.3, latency_ms=200, error="timeout", known=KNOWN)
    assert f == Fault(id="f1", capability="email_sending", provider="resend", fail_rate=0.3, error=ErrorKind.TIMEOUT,
                      latency_ms=200.0, injected_at=NOW, expires_at=NOW + 60, injected_by="ann@ops-1")
    assert f.key == "email_sending/resend"


def test_an_error_alone_fails_every_call_and_a_rate_alone_fails_transiently() -> None:
    assert fault(error=ErrorKind.AUTH).fail_rate == 1.0
    assert fault(fail_rate=0.5).error is ErrorKind.TRANSIENT
    assert fault(latency_ms=100).fail_rate == 0.0


@pytest.mark.parametrize("kw, problem", [
    (dict(fail_rate=1.5), FaultProblem.RATE_OUT_OF_RANGE),
    (dict(fail_rate=-0.1), FaultProblem.RATE_OUT_OF_RANGE),
    (dict(fail_rate=float("nan")), FaultProblem.RATE_OUT_OF_RANGE),
    (dict(latency_ms=100, delay_rate=2), FaultProblem.RATE_OUT_OF_RANGE),
    (dict(latency_ms=-5), FaultProblem.LATENCY_OUT_OF_RANGE),
    (dict(latency_ms=60_001), FaultProblem.LATENCY_OUT_OF_RANGE),
    (dict(fail_rate=0.1, duration_s=0), FaultProblem.DURATION_OUT_OF_RANGE),
    (dict(fail_rate=0.1, duration_s=3601), FaultProblem.DURATION_OUT_OF_RANGE),
    (dict(fail_rate=0.1, duration_s=float("inf")), FaultProblem.DURATION_OUT_OF_RANGE),
    (dict(error="cancelled"), FaultProblem.KIND_NOT_INJECTABLE),
    (dict(error="invalid_request"), FaultProblem.KIND_NOT_INJECTABLE),
    (dict(error="boom"), FaultProblem.KIND_NOT_INJECTABLE),
    (dict(), FaultProblem.NOTHING_TO_INJECT),
    (dict(fail_rate=0.0, latency_ms=0.0), FaultProblem.NOTHING_TO_INJECT),
    (dict(fail_rate=1, retry_after_s=5), FaultProblem.RETRY_AFTER_WITHOUT_RATE_LIMIT),
    (dict(provider="nope", fail_rate=1, known=KNOWN), FaultProblem.UNKNOWN_PROVIDER),
    (dict(capability="crm", provider="resend", fail_rate=1, known=KNOWN), FaultProblem.UNKNOWN_PROVIDER),
    (dict(fail_rate=1, policy=ChaosPolicy(allowed=False)), FaultProblem.FORBIDDEN),
])
def test_invalid_faults_are_refused_with_a_typed_problem(kw: dict, problem: FaultProblem) -> None:
    with pytest.raises(InvalidFault) as info:
        fault(**kw)
    assert problem in [p for p, _ in info.value.problems]


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(InvalidFault) as info:
        fault(fail_rate=2, latency_ms=-1, duration_s=0, policy=ChaosPolicy(allowed=False))
    assert [p for p, _ in info.value.problems] == [FaultProblem.FORBIDDEN, FaultProblem.RATE_OUT_OF_RANGE,
                                                   FaultProblem.LATENCY_OUT_OF_RANGE, FaultProblem.DURATION_OUT_OF_RANGE]
    assert "chaos.allowed: false" in str(info.value)


def test_injectable_kinds_are_what_a_provider_can_do() -> None:
    assert INJECTABLE_KINDS <= set(ErrorKind)
    assert {ErrorKind.UNAVAILABLE, ErrorKind.CANCELLED, ErrorKind.INVALID_REQUEST} & INJECTABLE_KINDS == set()
    for kind in INJECTABLE_KINDS:
        assert fault(error=kind).error is kind


# -- apply -------------------------------------------------------------------

def test_no_fault_passes() -> None:
    assert apply(None, Fixed(), NOW) == ChaosDecision(action=ChaosAction.PASS)


def test_a_failing_call_gets_the_kind() -> None:
    f = fault(fail_rate=0.5, error="rate_limited", retry_after_s=7)
    assert apply(f, Fixed(0.49), NOW) == ChaosDecision(action=ChaosAction.FAIL, error=ErrorKind.RATE_LIMITED,
                                                       retry_after_s=7, fault_id="f1")
    assert apply(f, Fixed(0.5), NOW) == ChaosDecision(action=ChaosAction.PASS, fault_id="f1")


def test_a_delay_then_maybe_a_failure() -> None:
    f = fault(fail_rate=0.5, latency_ms=250, delay_rate=0.5)
    assert apply(f, Fixed(0.1, 0.9), NOW) == ChaosDecision(action=ChaosAction.DELAY, delay_ms=250, fault_id="f1")
    assert apply(f, Fixed(0.1, 0.1), NOW).action is ChaosAction.FAIL and apply(f, Fixed(0.1, 0.1), NOW).delay_ms == 250
    assert apply(f, Fixed(0.9, 0.1), NOW) == ChaosDecision(action=ChaosAction.FAIL, error=ErrorKind.TRANSIENT, fault_id="f1")


def test_an_expired_fault_passes_and_says_so() -> None:
    f = fault(fail_rate=1.0)
    assert apply(f, Fixed(0.999), NOW + 59.9).action is ChaosAction.FAIL
    assert apply(f, Fixed(), NOW + 60) == ChaosDecision(action=ChaosAction.PASS, fault_id="f1", expired=True)


def test_a_seeded_source_fails_about_the_rate_and_the_same_calls_every_run() -> None:
    f = fault(fail_rate=0.3, latency_ms=10, delay_rate=0.5)
    first = [apply(f, r, NOW) for r in [random.Random(42)] for _ in range(10_000)]
    again = [apply(f, r, NOW) for r in [random.Random(42)] for _ in range(10_000)]
    assert first == again
    failed = sum(d.action is ChaosAction.FAIL for d in first) / len(first)
    delayed = sum(d.delay_ms > 0 for d in first) / len(first)
    assert 0.28 < failed < 0.32 and 0.48 < delayed < 0.52


# -- the book ---------------------------------------------------------------------

def test_inject_replaces_the_providers_fault() -> None:
    one, two = fault(fail_rate=0.1), fault(fail_rate=0.9, fault_id="f2", now=NOW + 5)
    book, events = inject(ChaosBook(), one)
    assert events == [FaultInjected(fault=one)]
    book, events = inject(book, two)
    assert events == [FaultInjected(fault=two, replaced=one)] and list(book.faults.values()) == [two]
    assert active(book, "email_sending", "resend", NOW + 6) == two and active(book, "email_sending", "smtp", NOW) is None


def test_clear_one_provider_a_capability_or_all() -> None:
    a, b, c = (fault(provider="resend", fail_rate=1), fault(provider="smtp", fail_rate=1, fault_id="f2"),
               fault(capability="email_verification", provider="zerobounce", fail_rate=1, fault_id="f3"))
    book = ChaosBook()
    for f in (a, b, c):
        book, _ = inject(book, f)
    only, events = clear(book, NOW + 1, "bob", "email_sending", "smtp")
    assert events == [FaultCleared(fault=b, at=NOW + 1, by="bob")] and set(only.faults) == {a.key, c.key}
    cap, events = clear(book, NOW + 1, "bob", "email_sending")
    assert [e.fault for e in events] == [a, b] and set(cap.faults) == {c.key}
    empty, events = clear(book, NOW + 1, "bob")
    assert empty.faults == {} and len(events) == 3
    assert clear(ChaosBook(), NOW, "bob") == (ChaosBook(), [])


def test_faults_expire_by_themselves_at_their_time() -> None:
    short, long = fault(fail_rate=1, duration_s=10), fault(provider="smtp", fail_rate=1, duration_s=100, fault_id="f2")
    book = ChaosBook()
    for f in (short, long):
        book, _ = inject(book, f)
    assert active(book, "email_sending", "resend", NOW + 10) is None    # over, even before the sweep removes it
    assert expire(book, NOW + 9) == (book, [])
    book, events = expire(book, NOW + 50)
    assert events == [FaultExpired(fault=short, at=NOW + 10)] and list(book.faults) == [long.key]


def test_events_round_trip_as_a_tagged_union_for_the_audit_log() -> None:
    book, injected = inject(ChaosBook(), fault(fail_rate=0.2, error="auth"))
    _, cleared = clear(book, NOW + 1, "bob")
    wire = msgspec.json.encode([*injected, *cleared])
    assert msgspec.json.decode(wire, type=list[ChaosEvent]) == [*injected, *cleared]
    assert msgspec.json.decode(msgspec.json.encode(book), type=ChaosBook) == book


# -- config -------------------------------------------------------------------------

def test_chaos_is_off_unless_the_config_allows_it() -> None:
    assert ChaosConfig().to_policy() == ChaosPolicy(allowed=False) == ChaosPolicy()
    assert ChaosConfig.model_validate({"allowed": True}).to_policy().allowed is True
    with pytest.raises(ValidationError):
        ChaosConfig.model_validate({"allow": False})
    with pytest.raises(ValidationError):
        ChaosConfig.model_validate({"max_duration_s": 0})
