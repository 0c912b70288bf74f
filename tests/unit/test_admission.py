"""Admission (actors/policy/admission.py): a router refuses new requests
only while its loop's lag has stood above the target for a whole interval."""

from __future__ import annotations

from actors.policy.admission import Admission, AdmissionPolicy, Overloaded

POLICY = AdmissionPolicy(enabled=True, target_s=0.05, interval_s=1.0, min_in_flight=16)
BUSY = 100     # requests in flight


def arrivals(admission: Admission, start: float, end: float, lag_s: float, every_s: float = 0.01,
             in_flight: int = BUSY) -> list[Overloaded | None]:
    answers, t = [], start
    while t < end:
        answers.append(admission.arrived(t, lag_s, in_flight))
        t += every_s
    return answers


def test_a_lag_below_the_target_admits_everything() -> None:
    admission = Admission(POLICY)
    assert not any(arrivals(admission, 0.0, 5.0, lag_s=0.049))
    assert admission.refused == 0 and not admission.overloaded(5.0)


def test_a_burst_shorter_than_the_interval_is_admitted() -> None:
    admission = Admission(POLICY)
    assert not any(arrivals(admission, 0.0, 0.9, lag_s=0.5))
    assert admission.arrived(0.95, 0.01, BUSY) is None         # the loop caught up: the streak ends
    assert not any(arrivals(admission, 1.0, 1.9, lag_s=0.5))   # a new burst starts from zero


def test_a_lag_standing_above_the_target_for_an_interval_refuses_until_it_drops() -> None:
    admission = Admission(POLICY)
    answers = arrivals(admission, 0.0, 1.5, lag_s=0.2)
    first = next(i for i, a in enumerate(answers) if a is not None)
    assert 0.99 <= first * 0.01 <= 1.01 and all(answers[first:])   # refused from one interval on
    refusal = answers[-1]
    assert refusal == Overloaded(lag_s=0.2, since_s=refusal.since_s, in_flight=BUSY, retry_after_s=1.0)
    assert admission.overloaded(1.5) and admission.refused == len(answers) - first
    assert admission.arrived(1.6, 0.001, BUSY) is None and not admission.overloaded(1.6)


def test_few_requests_in_flight_are_never_refused() -> None:
    # The lag is not this router's queue: the machine is busy elsewhere.
    admission = Admission(POLICY)
    assert not any(arrivals(admission, 0.0, 3.0, lag_s=0.5, in_flight=POLICY.min_in_flight - 1))
    assert admission.overloaded(3.0)        # shown, though nothing is refused


def test_turned_off_it_refuses_nothing_and_off_is_the_default() -> None:
    assert AdmissionPolicy().enabled is False
    admission = Admission(AdmissionPolicy(enabled=False))
    assert not any(arrivals(admission, 0.0, 3.0, lag_s=0.5))
    assert not admission.overloaded(3.0)


def test_after_a_quiet_spell_a_high_lag_starts_a_new_interval() -> None:
    # No arrivals for longer than an interval: nothing is known of the queue meanwhile.
    admission = Admission(POLICY)
    arrivals(admission, 0.0, 1.5, lag_s=0.2)
    assert not admission.overloaded(5.0)
    assert admission.arrived(5.0, 0.2, BUSY) is None
    assert admission.arrived(6.01, 0.2, BUSY) is None            # > interval since the last arrival: new streak
    assert not any(arrivals(admission, 6.02, 7.0, lag_s=0.2))
    assert arrivals(admission, 7.02, 7.05, lag_s=0.2)[0] is not None


def test_the_router_measures_its_loops_lag_and_answers_a_refusal_at_once() -> None:
    import asyncio

    from actors.errors import ErrorKind
    from actors.router.admission import RouterAdmission
    from actors.specs import AdmissionSpec

    spec = AdmissionSpec(enabled=True, target_lag_ms=5.0, interval_s=0.0, min_in_flight=0)
    admission = RouterAdmission(spec, "router:email_sending#1")

    async def behind_a_busy_loop() -> Overloaded | None:
        def hog() -> None:
            import time
            end = time.perf_counter() + 0.02   # a ready callback that holds the loop 20 ms
            while time.perf_counter() < end:
                pass
        asyncio.get_running_loop().call_soon(hog)
        return await admission.arrived(in_flight=3)

    why = asyncio.run(behind_a_busy_loop())
    assert why is not None and why.lag_s >= 0.02 and why.in_flight == 3
    result = admission.refusal(why, "email_sending", "send_email", "k-1", None)
    assert not result.ok and result.error.kind == ErrorKind.RATE_LIMITED and result.error.retry_after_s == 0.0
    assert result.idempotency_key == "k-1" and result.method == "send_email" and result.capability == "email_sending"
    assert "router:email_sending#1 is overloaded" in result.error.message
    assert "before anything was claimed or sent" in result.error.message and "same idempotency_key" in result.error.message
    assert RouterAdmission(AdmissionSpec(enabled=False), "router:x").policy.enabled is False


def test_a_refused_batch_is_answered_item_by_item_with_what_each_says() -> None:
    from actors.router.admission import options_of

    assert options_of(("send_email", {}, {"idempotency_key": "k", "dry_run": True})) == ("send_email", "k", True)
    assert options_of(["verify_email", {}]) == ("verify_email", None, None)
    assert options_of(("send_email", {}, {"idempotency_key": 7})) == ("send_email", None, None)
    assert options_of("garbage") == (None, None, None) and options_of(()) == (None, None, None)
