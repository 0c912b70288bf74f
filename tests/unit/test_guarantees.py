"""Delivery guarantees without Ray: unknown outcomes, the journal across
restarts, the outbox, throttling, rate limits, the retry budget, hedging and
deadlines. Providers are in-process cores sharing one state store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.errors import ErrorKind, RateLimited, TransientError
from actors.messages import CallContext
from actors.payloads import SendEmail
from actors.policy.health import Health
from tests.unit.fakes import Clock, sleeper, taking
from tests.unit.harness import EMAIL, Harness

VERIFY = {"email": "ann@example.com"}


class Reconcilable:
    """Adds a `reconcile` that answers from a dict (key -> value or None) to a scripted adapter."""

    def __init__(self, adapter: Any, answers: dict[str, Any]):
        self.answers = answers
        adapter.reconcile = self.reconcile
        self.asked: list[str] = []

    async def reconcile(self, method: str, payload: Any, ctx: CallContext) -> Any:
        self.asked.append(ctx.idempotency_key)
        return self.answers.get(ctx.idempotency_key)


# --- unknown outcomes -----------------------------------------------------------

def test_a_send_cut_off_mid_flight_is_parked_not_sent_elsewhere() -> None:
    h = Harness({"a": [sleeper(5)], "b": []}, attempt_timeout_s=0.2)
    res = h.invoke(idempotency_key="k1", deadline_s=2)
    assert not res.ok and res.error.kind is ErrorKind.OUTCOME_UNKNOWN
    assert res.outbox_id is not None and "outbox item" in res.error.message
    assert h.calls("b") == 0  # never sent to the backup: that could deliver twice
    [item] = h.db.outbox_list("email_sending")
    assert item.state == "parked" and item.reason == "outcome_unknown" and item.provider == "a"
    again = h.invoke(idempotency_key="k1")
    assert again.replayed and again.outbox_id == item.id and h.calls("a") == 1


def test_an_unknown_outcome_the_provider_can_look_up_falls_back_when_not_delivered() -> None:
    h = Harness({"a": [sleeper(5)], "b": []}, attempt_timeout_s=0.2)
    looked_up = Reconcilable(h.adapters["a"], {"k2": None})
    res = h.invoke(idempotency_key="k2", deadline_s=2)
    assert res.ok and res.provider == "b" and looked_up.asked == ["k2"]
    assert [a.maybe_delivered for a in res.attempts] == [True, False]


def test_an_unknown_outcome_the_provider_confirms_returns_its_delivery() -> None:
    h = Harness({"a": [TransientError("reset after DATA", maybe_delivered=True)], "b": []})
    Reconcilable(h.adapters["a"], {"k3": {"message_id": "<from-a>"}})
    res = h.invoke(idempotency_key="k3")
    assert res.ok and res.provider == "a" and res.value == {"message_id": "<from-a>"} and h.calls("b") == 0


def test_a_crash_after_delivery_is_answered_from_the_journal_after_the_router_restarts() -> None:
    h = Harness({"a": [], "b": []})
    # The first router claimed the key, sent it through b, then died before it could answer.
    h.claimed_by_a_router_that_died("k4")
    ctx = CallContext(request_id="r", method="send_email", idempotency_key="k4", journal=True)
    payload = SendEmail(**EMAIL)
    asyncio.run(h.providers["b"].call("send_email", payload, ctx))
    h.restart_router()
    res = h.invoke(idempotency_key="k4")
    assert res.ok and res.provider == "b" and res.replayed
    assert h.calls("a") == 0 and h.calls("b") == 1


def test_a_send_a_dead_provider_left_started_is_settled_before_anything_is_sent() -> None:
    h = Harness({"a": [], "b": []})
    # Provider a wrote `started` and its process died mid-send.
    h.left_by_a_crash("a", "k5")
    h.restart_provider("a")
    looked_up = Reconcilable(h.adapters["a"], {"k5": None})
    res = h.invoke(idempotency_key="k5")
    assert res.ok and looked_up.asked == ["k5"] and h.calls("a") + h.calls("b") == 1
    # Without a way to look it up, it stays unknown and is parked.
    del h.adapters["a"].reconcile
    h.left_by_a_crash("a", "k6")
    h.restart_provider("a")
    res = h.invoke(idempotency_key="k6")
    assert res.error.kind is ErrorKind.OUTCOME_UNKNOWN and h.calls("b") == 0


def test_concurrent_sends_of_one_key_reach_the_provider_once() -> None:
    h = Harness({"a": [sleeper(0.05)]})
    ctx = CallContext(request_id="r", method="send_email", idempotency_key="k7", journal=True)
    payload = SendEmail(**EMAIL)

    async def both():
        core = h.providers["a"]
        return await asyncio.gather(core.call("send_email", payload, ctx), core.call("send_email", payload, ctx))

    first, second = asyncio.run(both())
    assert first.ok and second.ok and h.calls("a") == 1


def test_repeat_keys_after_restarting_the_whole_gateway_deliver_nothing() -> None:
    h = Harness({"a": [], "b": []})
    first = h.invoke(idempotency_key="k8")
    h.restart_router()
    for name in ("a", "b"):
        h.restart_provider(name)
    again = h.invoke(idempotency_key="k8")
    assert again.replayed and again.value == first.value and h.calls("a") == 1


def test_sends_without_a_key_get_one() -> None:
    res = Harness({"a": []}).invoke()
    assert res.idempotency_key == f"auto-{res.request_id}"


# --- the outbox -----------------------------------------------------------------

def test_all_providers_down_queues_then_drains_exactly_once_in_order() -> None:
    h = Harness({"a": [TransientError("down")] * 2 + [{"message_id": f"m{i}"} for i in range(3)], "outbox": []})
    queued = [h.invoke({**EMAIL, "subject": f"s{i}"}, idempotency_key=f"q{i}") for i in range(2)]
    assert all(r.ok and r.provider == "outbox" and r.value["queued"] and not r.value["delivered"] for r in queued)
    assert [r.outbox_id for r in queued] == [1, 2]
    first = {**EMAIL, "subject": "s0"}
    assert h.invoke(first, idempotency_key="q0").value["queued"]  # a repeat while queued: the same answer, nothing new

    report = asyncio.run(h.router.drain_outbox())
    assert report["delivered"] == [1, 2] and report["failed"] == []
    subjects = [c[1].subject for c in h.adapters["a"].calls[2:]]
    assert subjects == ["s0", "s1"]  # oldest first, once each
    assert [i.state for i in h.db.outbox_list("email_sending", ("delivered",))] == ["delivered", "delivered"]
    repeat = h.invoke(first, idempotency_key="q0")
    assert repeat.replayed and repeat.provider == "a" and repeat.value == {"message_id": "m0"}
    assert asyncio.run(h.router.drain_outbox())["delivered"] == []  # nothing left, nothing sent again


def test_draining_stops_at_the_first_failure_and_keeps_the_order() -> None:
    h = Harness({"a": [TransientError("down")] * 2 + [{"message_id": "m"}, TransientError("down again")], "outbox": []},
                max_attempts=1)
    for i in range(2):
        h.invoke({**EMAIL, "subject": f"s{i}"}, idempotency_key=f"q{i}")
    report = asyncio.run(h.router.drain_outbox())
    assert report["delivered"] == [1] and [f["id"] for f in report["failed"]] == [2]
    [left] = h.db.outbox_list("email_sending")
    assert left.id == 2 and left.attempts == 1 and "down again" in left.error


def test_reads_are_not_queued() -> None:
    from actors.config import parse_config
    from actors.errors import ConfigError

    raw = {"capabilities": {"lead_enrichment": {"providers": [{"name": "o", "adapter": "outbox"}]}}}
    with pytest.raises(ConfigError, match="does not serve lead_enrichment"):
        parse_config(raw, env={})


# --- throttling and rate limits --------------------------------------------------

def test_a_429_throttles_the_provider_without_making_it_unhealthy() -> None:
    h = Harness({"a": [RateLimited("429", retry_after_s=20)] + [{"message_id": "a"}] * 5, "b": []})
    assert h.invoke().provider == "b"
    core = h.providers["a"]
    assert core.health.state is not Health.UNHEALTHY and core.status().health is Health.THROTTLED
    assert [x.provider for x in h.invoke().attempts] == ["b"]  # skipped, not tried
    h.clock.now += 21
    assert core.status().health is not Health.THROTTLED


def test_when_every_provider_is_throttled_the_request_waits_for_the_reset() -> None:
    h = Harness({"a": [RateLimited("429", retry_after_s=2), {"message_id": "after"}]}, max_attempts=1)
    throttled = h.invoke().error   # every provider answered 429: the request's kind says so, and when to come back
    assert throttled.kind is ErrorKind.RATE_LIMITED and throttled.retry_after_s == pytest.approx(2, abs=0.01)
    res = h.invoke(deadline_s=10)
    assert res.ok and res.value == {"message_id": "after"} and h.sleeps and sum(h.sleeps) == pytest.approx(2, abs=0.01)


def test_a_throttle_longer_than_the_deadline_is_not_waited_for() -> None:
    h = Harness({"a": [RateLimited("429", retry_after_s=60)]}, max_attempts=1)
    h.invoke()
    res = h.invoke(deadline_s=5)
    assert res.error.kind is ErrorKind.RATE_LIMITED and "throttled" in res.error.message and not h.sleeps
    assert res.error.retry_after_s == pytest.approx(60, abs=0.01)


def test_the_configured_rate_limit_spills_over_to_the_next_provider() -> None:
    h = Harness({"a": [], "b": []}, provider_policy={"a": {"provider": {"rate_limit_per_s": 2, "rate_limit_burst": 2}}})
    served = [h.invoke().provider for _ in range(4)]
    assert served == ["a", "a", "b", "b"]
    h.clock.now += 1
    assert h.invoke().provider in ("a", "b") and h.calls("a") + h.calls("b") == 5


# --- the retry budget -------------------------------------------------------------

def test_an_outage_of_every_provider_does_not_multiply_the_load() -> None:
    down = [TransientError("down")] * 1000
    h = Harness({"a": list(down), "b": list(down), "c": list(down)},
                retry_budget={"percent": 20, "min_per_s": 0, "ttl_s": 10})

    async def burst():
        return await asyncio.gather(*(h.router.invoke("send_email", EMAIL) for _ in range(100)))

    results = asyncio.run(burst())
    sent = h.calls("a") + h.calls("b") + h.calls("c")
    assert sent <= 100 * 1.2 + 1, sent  # without the budget: 300
    assert any(r.error.kind is ErrorKind.RETRY_BUDGET_EXHAUSTED for r in results)


def test_a_spent_budget_still_queues_in_the_outbox() -> None:
    h = Harness({"a": [TransientError("down")] * 10, "b": [TransientError("down")] * 10, "outbox": []},
                retry_budget={"percent": 0, "min_per_s": 0, "ttl_s": 10})
    res = h.invoke()
    assert res.ok and res.provider == "outbox" and h.calls("b") == 0


# --- hedging ----------------------------------------------------------------------

def test_a_slow_idempotent_call_is_hedged_to_the_next_provider() -> None:
    fast = [{"email": "ann@example.com", "status": "valid"}] * 30
    h = Harness({"a": list(fast) + [sleeper(2)], "b": [{"email": "ann@example.com", "status": "valid", "by": "b"}]},
                capability="email_verification",
                hedging={"enabled": True, "min_samples": 20, "min_delay_ms": 1, "budget_percent": 100})
    h.restart_router(real_sleep=True)
    for _ in range(25):
        assert h.invoke(VERIFY, method="verify_email").provider == "a"
    h.adapters["a"].script = [sleeper(2)]
    res = h.invoke(VERIFY, method="verify_email")
    assert res.ok and res.provider == "b" and res.elapsed_ms < 1500
    assert [(a.provider, a.hedge, a.error_kind) for a in res.attempts] == [
        ("b", True, None), ("a", False, ErrorKind.CANCELLED)]


def test_sends_are_never_hedged() -> None:
    h = Harness({"a": [sleeper(0.01)] * 30, "b": []}, hedging={"enabled": True, "min_samples": 1, "min_delay_ms": 0})
    for _ in range(5):
        assert [a.provider for a in h.invoke().attempts] == ["a"]
    assert h.calls("b") == 0


# --- deadlines --------------------------------------------------------------------

def test_a_deadline_no_attempt_can_meet_fails_at_once() -> None:
    clock = Clock(virtual=True)  # the provider's answers take 100 ms of the router's clock: nobody sleeps
    h = Harness({"a": [taking(clock, 0.1, {"email": "ann@example.com", "status": "valid"})] * 20},
                capability="email_verification", clock=clock)
    for _ in range(12):
        h.invoke(VERIFY, method="verify_email")
    calls = h.calls("a")
    res = h.invoke(VERIFY, method="verify_email", deadline_s=0.03)
    assert res.error.kind is ErrorKind.DEADLINE_EXCEEDED and res.elapsed_ms < 25 and h.calls("a") == calls


# --- parked requests ----------------------------------------------------------------

def test_a_parked_send_is_settled_once_the_provider_can_tell() -> None:
    h = Harness({"a": [TransientError("reset after DATA", maybe_delivered=True)] * 2, "b": []})
    parked = [h.invoke(idempotency_key=k) for k in ("p1", "p2")]
    assert [r.error.kind for r in parked] == [ErrorKind.OUTCOME_UNKNOWN, ErrorKind.OUTCOME_UNKNOWN]
    Reconcilable(h.adapters["a"], {"p1": {"message_id": "<was-sent>"}, "p2": None})
    report = asyncio.run(h.router.settle_parked())
    assert report["delivered"] == [parked[0].outbox_id] and report["requeued"] == [parked[1].outbox_id]
    assert h.invoke(idempotency_key="p1").value == {"message_id": "<was-sent>"}
    assert asyncio.run(h.router.drain_outbox())["delivered"] == [parked[1].outbox_id]
    # p1's send (which the provider confirms), p2's send (which it never made) and p2's one delivery.
    assert h.calls("a") == 3 and h.calls("b") == 0


def test_an_operator_can_force_a_replay_of_a_parked_send() -> None:
    h = Harness({"a": [TransientError("reset after DATA", maybe_delivered=True), {"message_id": "again"}]})
    parked = h.invoke(idempotency_key="p3")
    stuck = asyncio.run(h.router.replay_outbox([parked.outbox_id]))
    assert stuck["delivered"] == [] and stuck["settled"]["unknown"] == [parked.outbox_id]
    forced = asyncio.run(h.router.replay_outbox([parked.outbox_id], force=True))
    assert forced["delivered"] == [parked.outbox_id]
    assert h.invoke(idempotency_key="p3").value == {"message_id": "again"}


def test_a_request_waits_for_a_short_throttle_rather_than_being_queued() -> None:
    h = Harness({"a": [RateLimited("429", retry_after_s=3), {"message_id": "a-later"}], "outbox": []})
    res = h.invoke(deadline_s=10)
    assert res.ok and res.provider == "a" and res.value == {"message_id": "a-later"}
    assert sum(h.sleeps) == pytest.approx(3, abs=0.01) and not h.db.outbox_list("email_sending")
    # A throttle past the deadline is not waited for: the request is queued.
    h.adapters["a"].script = [RateLimited("429", retry_after_s=60)]
    h.clock.now += 10
    queued = h.invoke(deadline_s=10)
    assert queued.ok and queued.provider == "outbox" and queued.outbox_id


def test_two_requests_planned_together_take_one_half_open_trial() -> None:
    h = Harness({"a": [TransientError("down")] * 3 + [sleeper(0.05)] * 5, "b": [sleeper(0.01)] * 10}, max_attempts=1,
                retry_rounds=0)

    async def burst(n: int):
        return await asyncio.gather(*(h.router.invoke("send_email", EMAIL) for _ in range(n)))

    asyncio.run(burst(3))  # a fails three times at once: UNHEALTHY
    assert h.providers["a"].health.state is Health.UNHEALTHY
    h.clock.now += 31  # cooldown over
    trials = asyncio.run(burst(4))
    assert sum(1 for r in trials if r.attempts[0].provider == "a") == 1


def test_the_hedge_delay_is_capped_when_the_quantile_falls_in_the_tail() -> None:
    from actors.policy.hedging import HedgePolicy, LatencyWindow, hedge_delay_s

    window = LatencyWindow()
    for i in range(100):
        window.add(4000.0 if i % 20 == 19 else 200.0)  # a 5% tail: the p95 is a tail call
    assert hedge_delay_s(window, HedgePolicy(quantile=0.95)) == pytest.approx(0.6)  # 3 x the median
    assert hedge_delay_s(window, HedgePolicy(quantile=0.9)) == pytest.approx(0.2)


# --- batching -----------------------------------------------------------------------

def test_invoke_many_sends_each_provider_its_share_in_one_call() -> None:
    h = Harness({"a": [TransientError("down")] * 10 + [{"message_id": "a"}] * 100, "b": [{"message_id": "b"}] * 100})
    requests = [("send_email", {**EMAIL, "subject": f"s{i}"}, {"idempotency_key": f"k{i}"}) for i in range(30)]
    results = asyncio.run(h.router.invoke_many(requests))
    assert all(r.ok for r in results) and [r.idempotency_key for r in results] == [f"k{i}" for i in range(30)]
    # First attempts: one call to a; the ten that failed there fall back to b together.
    assert h.batches == [("a", 30), ("b", 10)]
    assert sum(r.provider == "b" for r in results) == 10
