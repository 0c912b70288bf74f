"""A provider's configured rate limit held by its provider actor (issue 20,
item 3): the bucket's reservations, the provider's pace and refusals, and
routers that share one provider. Two routers here are two RouterCores over
the same ProviderCores, as two router actors share the provider actors;
the rate at the provider itself is tested on Ray in
tests/adapters/crm/test_rate_limit_across_routers.py."""

from __future__ import annotations

import asyncio

import pytest

from actors.errors import ErrorKind
from actors.messages import CallContext
from actors.payloads import SendEmail
from actors.policy.ratelimit import TokenBucket
from actors.policy.skips import SkipReason
from actors.provider.core import ProviderCore
from actors.provider.pacing import AtRateLimit, Pacing, max_pace_s
from actors.router.core import RouterCore
from tests.unit.fakes import Clock, ScriptedAdapter, capability_spec
from tests.unit.harness import EMAIL, Harness

PAYLOAD = SendEmail(to=["a@b.co"], subject="s", text="t")


def limited(rate: float, burst: float | None = None):
    policy = {"provider": {"rate_limit_per_s": rate, **({"rate_limit_burst": burst} if burst else {})}}
    return capability_spec(["p"], provider_policy={"p": policy}).providers[0]


# --- the bucket ---------------------------------------------------------------------

def test_reservations_hand_out_distinct_slots_a_rate_apart() -> None:
    bucket = TokenBucket(rate_per_s=4, burst=1)
    assert [bucket.reserve(100.0, max_wait_s=10) for _ in range(4)] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert bucket.wait_s(100.0) == pytest.approx(1.0)  # the next after the four promised
    assert not bucket.try_take(100.5)                 # a slot promised is not taken twice
    assert bucket.try_take(101.0)


def test_a_slot_too_far_off_is_refused_and_nothing_is_taken() -> None:
    bucket = TokenBucket(rate_per_s=2, burst=1)
    assert bucket.reserve(0.0, max_wait_s=0) == 0.0
    assert bucket.reserve(0.0, max_wait_s=0.4) is None
    assert bucket.wait_s(0.0) == pytest.approx(0.5)  # unchanged by the refusal
    assert bucket.reserve(0.0, max_wait_s=0.5) == pytest.approx(0.5)


def test_how_long_an_attempt_may_wait_for_a_slot() -> None:
    ctx = CallContext(request_id="r", method="m", timeout_s=4.0)
    assert max_pace_s(ctx) == 2.0                        # half its time; the rest is the call's
    assert max_pace_s(ctx, fault_delay_s=2.0) == 1.0
    assert max_pace_s(CallContext(request_id="r", method="m", timeout_s=4.0, pace_s=0.05)) == 0.05
    assert max_pace_s(CallContext(request_id="r", method="m", timeout_s=4.0, pace_s=9)) == 2.0


def test_no_configured_limit_takes_no_time() -> None:
    pacing = Pacing(capability_spec(["p"]).providers[0])
    assert pacing.bucket is None and pacing.slot(0.0, 0.0) == 0.0


def test_a_refusal_says_when_the_next_slot_is_free() -> None:
    pacing = Pacing(limited(2, 1))
    assert pacing.slot(10.0, 0.0) == 0.0
    refused = pacing.slot(10.0, 0.1)
    assert isinstance(refused, AtRateLimit)
    assert refused.wait_s == pytest.approx(0.5) and refused.free_at == pytest.approx(10.5)
    assert "2/s" in str(refused) and "every router" in str(refused)


# --- the provider actor's logic -----------------------------------------------------

def test_the_provider_paces_attempts_that_may_wait() -> None:
    clock = Clock(now=100.0, virtual=True)
    adapter = ScriptedAdapter([])
    core = ProviderCore(limited(2, 1), adapter, clock=clock)

    async def three():
        ctx = CallContext(request_id="r", method="send_email", timeout_s=10.0)
        return await asyncio.gather(*(core.call("send_email", PAYLOAD, ctx) for _ in range(3)))

    replies = asyncio.run(three())
    assert all(r.ok and r.paced_until is None for r in replies)
    # A slot each, half a second apart: the first now, the second at 100.5, the
    # third at 101 (asked for once the fake clock's sleep moved it to 100.5).
    assert len(adapter.calls) == 3 and clock.slept == pytest.approx([0.5, 0.5])


def test_a_refusal_reaches_neither_the_adapter_nor_the_providers_health() -> None:
    clock = Clock(now=100.0, virtual=True)
    adapter = ScriptedAdapter([])
    core = ProviderCore(limited(2, 1), adapter, clock=clock)
    ctx = CallContext(request_id="r", method="send_email", timeout_s=10.0, pace_s=0.05)
    assert asyncio.run(core.call("send_email", PAYLOAD, ctx)).ok
    health = core.health
    reply = asyncio.run(core.call("send_email", PAYLOAD, ctx))
    assert not reply.ok and reply.error_kind is ErrorKind.RATE_LIMITED and not reply.maybe_delivered
    assert reply.paced_until == pytest.approx(100.5) and reply.retry_after_s == pytest.approx(0.5)
    assert len(adapter.calls) == 1 and core.health == health and core.health.throttled_until is None


# --- routers sharing a provider -------------------------------------------------------

def second_router(h: Harness) -> RouterCore:
    """Another router of the same capability over the same provider actors."""
    first = h.router
    second = h.restart_router()
    h.router = first
    return second


def test_two_routers_together_keep_to_the_providers_limit_and_spill_over() -> None:
    h = Harness({"a": [], "b": []}, provider_policy={"a": {"provider": {"rate_limit_per_s": 2, "rate_limit_burst": 2}}},
                ranking="actors.policy.ranking:configured_order")
    other = second_router(h)

    async def both():
        return [await router.invoke("send_email", EMAIL) for router in (h.router, other, h.router, other)]

    results = asyncio.run(both())
    # Each router's own bucket would let it send 2 to `a` now: together they send 2, the limit.
    assert [r.provider for r in results] == ["a", "a", "b", "b"] and all(r.ok for r in results)
    assert h.calls("a") == 2
    refused = results[3]
    assert [s.reason for s in refused.skips] == [SkipReason.RATE_LIMITED] and refused.attempts[0].provider == "b"
    # The router that was refused leaves `a` out of its plans until the slot it was told of.
    again = asyncio.run(other.invoke("send_email", EMAIL))
    assert again.provider == "b" and h.calls("a") == 2
    h.clock.now += 1
    assert asyncio.run(other.invoke("send_email", EMAIL)).provider == "a"


def test_with_no_other_provider_the_provider_paces_the_second_router_within_its_time() -> None:
    h = Harness({"a": []}, provider_policy={"a": {"provider": {"rate_limit_per_s": 1, "rate_limit_burst": 1}}},
                attempt_timeout_s=10, deadline_s=30)
    other = second_router(h)
    assert h.invoke().ok
    res = asyncio.run(other.invoke("send_email", EMAIL))
    assert res.ok and res.provider == "a" and h.calls("a") == 2 and not res.skips
    assert 1.0 in h.clock.slept  # the provider actor held it for its slot


def test_a_slot_beyond_the_attempts_time_is_waited_for_by_the_router_and_tried_again() -> None:
    h = Harness({"a": []}, provider_policy={"a": {"provider": {"rate_limit_per_s": 0.2, "rate_limit_burst": 1}}},
                attempt_timeout_s=4, deadline_s=30)
    other = second_router(h)
    assert h.invoke().ok
    res = asyncio.run(other.invoke("send_email", EMAIL))
    assert res.ok and h.calls("a") == 2 and len(res.attempts) == 1
    assert h.sleeps and h.sleeps[0] == pytest.approx(5.0)  # the router waited for the slot it was told of


def test_a_slot_beyond_the_deadline_fails_as_rate_limited_with_when_to_retry() -> None:
    h = Harness({"a": []}, provider_policy={"a": {"provider": {"rate_limit_per_s": 0.1, "rate_limit_burst": 1}}},
                attempt_timeout_s=2, deadline_s=5)
    other = second_router(h)
    assert h.invoke().ok
    res = asyncio.run(other.invoke("send_email", EMAIL))
    assert not res.ok and res.error.kind is ErrorKind.RATE_LIMITED and res.attempts == []
    assert res.error.retry_after_s == pytest.approx(10.0, abs=0.01) and h.calls("a") == 1

