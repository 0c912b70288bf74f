"""Where a hedge goes and whether it is sent (policy/hedging.py), on
hand-built inputs: no router, no clock."""

from __future__ import annotations

from actors.policy.budget import RetryBudget
from actors.policy.hedging import HedgePolicy, LatencyWindow, hedge_after_s, hedge_partner, may_send_hedge
from actors.policy.ratelimit import TokenBucket

NOW = 1000.0
ORDER = ["a", "b", "c", "outbox"]


def partner(**kw) -> str | None:
    args = dict(hedged=True, tried=0, used=set(), resorts={"outbox"}, buckets={}, now=NOW)
    return hedge_partner(ORDER, kw.pop("first", "a"), **{**args, **kw})


def test_the_hedge_goes_to_the_next_provider_of_the_plan() -> None:
    assert partner() == "b"
    assert partner(first="b") == "c"
    assert partner(used={"b"}) == "c"


def test_never_the_last_resort_nor_a_provider_at_its_rate_limit() -> None:
    assert partner(first="c") is None
    full = TokenBucket(rate_per_s=1, burst=1)
    assert full.try_take(NOW)
    assert partner(buckets={"b": full}) == "c"
    assert partner(buckets={"b": full}, now=NOW + 1) == "b"     # a slot again


def test_only_the_first_attempt_of_a_hedged_request() -> None:
    assert partner(tried=1) is None
    assert partner(hedged=False) is None


def window(*latencies_ms: float) -> LatencyWindow:
    w = LatencyWindow()
    for x in latencies_ms:
        w.add(x)
    return w


def test_the_backup_waits_the_recent_quantile_if_the_deadline_leaves_time() -> None:
    policy = HedgePolicy(quantile=0.95, min_samples=20, min_delay_ms=5, max_delay_factor=3)
    w = window(*([10.0] * 19 + [25.0]))
    assert hedge_after_s(w, policy, remaining_s=1.0) == 0.025
    assert hedge_after_s(w, policy, remaining_s=0.02) is None     # no time left by then
    assert hedge_after_s(window(10.0), policy, remaining_s=1.0) is None   # too few known


def test_it_is_sent_only_with_room_in_the_hedge_budget_and_a_slot_of_the_rate_limit() -> None:
    budget = RetryBudget(percent=0, min_per_s=0.2, ttl_s=10)   # two in the window
    assert may_send_hedge(budget, None, NOW)
    empty = TokenBucket(rate_per_s=1, burst=1)
    assert empty.try_take(NOW)
    assert not may_send_hedge(budget, empty, NOW)              # the budget's second, then no slot
    assert not may_send_hedge(budget, None, NOW)               # the budget is spent
