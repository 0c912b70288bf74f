"""Routing logic without Ray: provider actors are replaced by ProviderCore
instances around scripted adapters, reached through the same `send` seam."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from actors.errors import AuthError, ErrorKind, NotSupported, ProviderRejected, RateLimited, TransientError
from actors.policy.health import Health
from tests.unit.fakes import Clock, sleeper
from tests.unit.harness import EMAIL, Harness

def test_primary_serves_when_healthy() -> None:
    h = Harness({"a": [], "b": []})
    res = h.invoke()
    assert res.ok and res.provider == "a" and [x.provider for x in res.attempts] == ["a"]
    assert res.value == {"message_id": "m"} and res.request_id and res.elapsed_ms >= 0
    assert not h.adapters["b"].calls


def test_falls_back_and_lists_every_attempt() -> None:
    h = Harness({"a": [TransientError("a is down")], "b": []})
    res = h.invoke()
    assert res.ok and res.provider == "b"
    assert [(x.provider, x.ok, x.error_kind) for x in res.attempts] == [("a", False, ErrorKind.TRANSIENT), ("b", True, None)]
    assert res.as_tuple() == (True, {"message_id": "m"}, "b")


def test_all_failed_reports_each_kind() -> None:
    h = Harness({"a": [TransientError("down")], "b": [AuthError("bad key")]})
    res = h.invoke()
    assert not res.ok and res.error.kind is ErrorKind.ALL_PROVIDERS_FAILED
    assert "a: transient" in res.error.message and "b: auth" in res.error.message


def test_max_attempts_caps_the_fallback_chain() -> None:
    h = Harness({"a": [TransientError("x")], "b": [TransientError("x")], "c": []}, max_attempts=2, retry_rounds=0)
    res = h.invoke()
    assert not res.ok and len(res.attempts) == 2 and not h.adapters["c"].calls


def test_invalid_payload_calls_no_provider() -> None:
    h = Harness({"a": []})
    res = h.invoke({"to": "nobody"})
    assert res.error.kind is ErrorKind.INVALID_REQUEST and res.attempts == [] and "$.to" in res.error.message
    assert not h.adapters["a"].calls


@pytest.mark.parametrize("options", [{"idempotency_key": ""}, {"deadline_s": -1}, {"deadline_s": "soon"}])
def test_invalid_options_are_invalid_requests(options: dict) -> None:
    res = Harness({"a": []}).invoke(**options)
    assert res.error.kind is ErrorKind.INVALID_REQUEST and res.attempts == []


def test_unknown_method_names_the_known_ones() -> None:
    res = Harness({"a": []}).invoke(method="send_mail")
    assert res.error.kind is ErrorKind.UNKNOWN_METHOD and "send_email" in res.error.message


def test_not_supported_is_a_skip_not_a_try() -> None:
    h = Harness({"a": [NotSupported("no x")], "b": [TransientError("x")], "c": []}, max_attempts=2)
    res = h.invoke()
    assert res.ok and res.provider == "c"


def test_nothing_can_serve_is_no_available_provider() -> None:
    res = Harness({"a": [NotSupported("a posts to x only")]}).invoke()
    assert res.error.kind is ErrorKind.NO_AVAILABLE_PROVIDER and "x only" in res.error.message


def test_rejected_payload_does_not_hurt_the_provider() -> None:
    h = Harness({"a": [ProviderRejected("400 bad from")] * 5, "b": []})
    for _ in range(5):
        assert h.invoke().provider == "b"
    assert h.providers["a"].health.consecutive_failures == 0


def test_ranking_converges_on_the_provider_that_works() -> None:
    h = Harness({"a": [TransientError("down")] * 100, "b": []})
    attempts = [len(h.invoke().attempts) for _ in range(20)]
    # One failure is enough for the seed's key to rank the backup's streak first.
    assert attempts[0] == 2 and set(attempts[1:]) == {1}
    assert len(h.adapters["a"].calls) == 1


def break_concurrently(h: Harness, n: int = 3) -> None:
    """Requests planned together all try the primary first: n failures make it UNHEALTHY."""

    async def burst():
        return await asyncio.gather(*(h.router.invoke("send_email", EMAIL) for _ in range(n)))

    assert all(r.ok for r in asyncio.run(burst()))


def test_unhealthy_provider_costs_nothing_until_its_half_open_trial() -> None:
    clock = Clock()
    h = Harness({"a": [TransientError("down")] * 100, "b": []}, clock=clock)
    break_concurrently(h)
    assert h.providers["a"].health.state is Health.UNHEALTHY and len(h.adapters["a"].calls) == 3
    assert all(len(h.invoke().attempts) == 1 for _ in range(10))
    assert len(h.adapters["a"].calls) == 3
    clock.now += 31  # cooldown over: one half-open trial goes first, then skipped again
    trial = h.invoke()
    assert trial.ok and trial.attempts[0].trial and [a.provider for a in trial.attempts] == ["a", "b"]
    assert len(h.invoke().attempts) == 1 and len(h.adapters["a"].calls) == 4


def test_successful_trial_brings_the_provider_back() -> None:
    clock = Clock()
    h = Harness({"a": [TransientError("down")] * 3, "b": []}, clock=clock)
    break_concurrently(h)
    clock.now += 31
    res = h.invoke()
    assert res.provider == "a" and res.attempts[0].trial
    assert h.providers["a"].health.state is Health.DEGRADED


def test_dead_actor_is_a_failed_attempt_and_skipped_briefly() -> None:
    clock = Clock()
    h = Harness({"a": [], "b": []}, clock=clock)
    h.dead.add("a")
    res = h.invoke()
    assert res.ok and res.attempts[0].error_kind is ErrorKind.CRASHED
    assert [a.provider for a in h.invoke().attempts] == ["b"]  # skipped while unreachable
    h.dead.clear()
    clock.now += 2
    assert h.invoke().provider == "b"  # b is now ranked first on its streak


def test_deadline_shorter_than_an_attempt() -> None:
    h = Harness({"a": [sleeper(5)], "b": [sleeper(5)]})
    res = h.invoke(deadline_s=0.2)
    assert res.error.kind is ErrorKind.DEADLINE_EXCEEDED
    assert res.elapsed_ms < 2000
    assert h.adapters["a"].calls[0][2].timeout_s <= 0.2


def test_each_attempt_gets_the_time_that_remains() -> None:
    # An idempotent method: a timed-out attempt may simply be made elsewhere.
    h = Harness({"a": [sleeper(5)], "b": []}, capability="email_verification", attempt_timeout_s=0.3)
    res = h.invoke({"email": "ann@example.com"}, method="verify_email", deadline_s=2.0)
    assert res.ok and res.provider == "b" and res.attempts[0].error_kind is ErrorKind.TIMEOUT
    first, second = h.adapters["a"].calls[0][2], h.adapters["b"].calls[0][2]
    assert first.timeout_s == pytest.approx(0.3) and second.timeout_s <= 0.3


def test_dry_run_reaches_the_adapter_and_leaves_health_alone() -> None:
    h = Harness({"a": [TransientError("x")] * 3})
    res = h.invoke(dry_run=True)
    assert res.dry_run and h.adapters["a"].calls[0][2].dry_run
    assert h.providers["a"].health.total_calls == 0


def test_repeated_key_returns_the_first_result_and_delivers_once() -> None:
    h = Harness({"a": []})

    async def run():
        first = await h.router.invoke("send_email", EMAIL, idempotency_key="k")
        again = await h.router.invoke("send_email", EMAIL, idempotency_key="k")
        return first, again

    first, again = asyncio.run(run())
    assert again.replayed and not first.replayed and again.request_id == first.request_id
    assert len(h.adapters["a"].calls) == 1


def test_concurrent_repeats_wait_for_the_first() -> None:
    h = Harness({"a": [sleeper(0.05)]})

    async def run():
        return await asyncio.gather(*(h.router.invoke("send_email", EMAIL, idempotency_key="k") for _ in range(5)))

    results = asyncio.run(run())
    assert all(r.ok for r in results) and sum(not r.replayed for r in results) == 1
    assert len(h.adapters["a"].calls) == 1


def test_a_failed_key_may_be_retried() -> None:
    h = Harness({"a": [TransientError("x"), {"message_id": "second"}]}, max_attempts=1, retry_rounds=0)

    async def run():
        return [await h.router.invoke("send_email", EMAIL, idempotency_key="k") for _ in range(2)]

    first, second = asyncio.run(run())
    assert not first.ok and second.ok and not second.replayed


def test_recent_operations_keep_the_last_ten_with_redacted_errors() -> None:
    h = Harness({"a": []})
    for _ in range(12):
        h.invoke()
    h.invoke({"to": "x"})
    ops = list(h.router.recent)
    assert len(ops) == 10 and ops[-1].error_kind is ErrorKind.INVALID_REQUEST and ops[0].ok


def test_invoke_many_keeps_order_and_reports_malformed_items() -> None:
    h = Harness({"a": []})

    async def run():
        return await h.router.invoke_many([("send_email", EMAIL, {}), ("send_email", {"to": 1}), "junk",
                                           ("send_email", EMAIL, {"idempotency_key": "z"})])

    results = asyncio.run(run())
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[2].error.kind is ErrorKind.INVALID_REQUEST and "(method, payload, options)" in results[2].error.message
    assert results[3].idempotency_key == "z"


def test_a_batch_answered_with_too_few_replies_leaves_no_caller_waiting_and_sends_nothing_twice() -> None:
    h = Harness({"a": [], "b": []})
    answer = h.send_many

    async def one_reply_short(name: str, calls: list[Any]):
        return (await answer(name, calls))[:-1]

    h.send_many = one_reply_short  # type: ignore[method-assign]
    h.restart_router()

    async def run():
        return await asyncio.wait_for(h.router.invoke_many(
            [("send_email", EMAIL, {"idempotency_key": f"k{i}"}) for i in range(3)]), timeout=10)

    results = asyncio.run(run())
    # Each key is settled from a's journal: delivered once, never sent to b.
    assert [r.ok for r in results] == [True, True, True] and [r.provider for r in results] == ["a", "a", "a"]
    assert h.calls("a") == 3 and h.calls("b") == 0
    assert "answered a batch of 3 calls with 2 replies" in results[0].attempts[0].error


# --- rounds: every provider failed transiently --------------------------------------

def test_when_every_provider_failed_transiently_it_tries_again_in_rounds() -> None:
    h = Harness({"a": [TransientError("503")] * 2, "b": [TransientError("503")] * 2})
    res = h.invoke(idempotency_key="round-1")
    assert res.ok and len(res.attempts) == 5  # two rounds of two failed, the third round's first served
    assert [a.ok for a in res.attempts] == [False] * 4 + [True]
    assert len(h.sleeps) == 2 and all(0 <= s <= 0.1 for s in h.sleeps)  # full jitter under 50 ms, then 100 ms
    assert h.router.counters["retry_rounds"] == 2


def test_rounds_stop_at_the_configured_number_and_say_so() -> None:
    h = Harness({"a": [TransientError("503")] * 5, "b": [TransientError("503")] * 5}, retry_rounds=1)
    res = h.invoke()
    assert not res.ok and res.error.kind is ErrorKind.ALL_PROVIDERS_FAILED and len(res.attempts) == 4
    assert "in 2 rounds" in res.error.message


def test_no_round_for_a_failure_that_will_not_pass() -> None:
    h = Harness({"a": [AuthError("401 bad key")], "b": [ProviderRejected("400 no such field")]})
    res = h.invoke()
    assert not res.ok and len(res.attempts) == 2 and h.sleeps == []


def test_no_round_past_the_deadline_or_the_retry_budget() -> None:
    class Longest(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    h = Harness({"a": [TransientError("503")] * 3}, retry_backoff_ms=5000, retry_backoff_max_ms=5000)
    h.router._random = Longest()  # a 5 s pause: longer than the 1 s deadline
    res = h.invoke(deadline_s=1)
    assert not res.ok and len(res.attempts) == 1 and h.sleeps == []
    budgetless = Harness({"a": [TransientError("503")] * 3}, retry_budget={"percent": 0, "min_per_s": 0})
    res = budgetless.invoke()
    assert not res.ok and len(res.attempts) == 1


def test_with_an_outbox_the_request_is_queued_rather_than_tried_in_rounds() -> None:
    h = Harness({"a": [TransientError("503")], "outbox": []})
    res = h.invoke(idempotency_key="q-1")
    assert res.ok and res.provider == "outbox" and h.sleeps == []


def test_every_provider_throttled_says_when_to_come_back() -> None:
    h = Harness({"a": [RateLimited("429", retry_after_s=30)], "b": [RateLimited("429", retry_after_s=20)]},
                wait_for_throttle=False)
    first = h.invoke()
    assert not first.ok and first.error.kind is ErrorKind.RATE_LIMITED
    assert first.error.retry_after_s == pytest.approx(20, abs=0.01)
    later = h.invoke()  # both still throttled: nothing tried, the earliest reset given
    assert later.error.kind is ErrorKind.RATE_LIMITED and later.attempts == []
    assert later.error.retry_after_s == pytest.approx(20, abs=0.01)


# --- a provider actor that Ray restarted ----------------------------------------------

def test_a_restarted_provider_is_tried_at_once_and_resumes_its_health() -> None:
    h = Harness({"a": [], "b": []})
    for _ in range(6):
        assert h.invoke().provider == "a"  # a: healthy, six successes
    known = h.router.views["a"].health
    h.dead.add("a")
    res = h.invoke()  # a's actor is gone: b serves, and a is skipped for unreachable_backoff_s
    assert res.provider == "b" and h.router.views["a"].unreachable_until is not None
    h.dead.discard("a")
    fresh = h.restart_provider("a")
    health = h.router.provider_back("a")  # what ProviderActor._back asks when Ray restarts it
    assert health == known and h.router.views["a"].unreachable_until is None
    assert fresh.resume(health) and fresh.health.consecutive_successes == 6
    assert h.invoke().provider == "a"  # first again: a crash of its actor said nothing about the provider
    assert not fresh.resume(health)  # only before it has seen an outcome of its own


def test_a_late_failure_of_a_call_to_the_process_before_a_restart_leaves_the_new_one_in_the_plan() -> None:
    from actors.router.provider_views import View

    view = View(back_at=100.0)  # its restarted actor said it is back at t=100
    view.unreachable(sent_at=99.5, now=101.0, backoff_s=1.0)  # sent to the old process, its death reported late
    assert view.unreachable_until is None
    view.unreachable(sent_at=100.5, now=101.0, backoff_s=1.0)  # sent to the new one: it is unreachable too
    assert view.unreachable_until == 102.0
