"""When to send a hedged request, and where, as pure code.

For idempotent methods only: if the first attempt has not answered after
the provider's recent `quantile` latency, a backup goes to the next provider
and the first success wins (Dean & Barroso, "The Tail at Scale"). Hedges
draw on a budget of their own, so a slow provider cannot double the load.

    hedge_partner   where a backup would go: the next provider of the plan
    hedge_after_s   how long the first attempt has before the backup is sent
    may_send_hedge  whether it is sent, once that time is up: the hedge
                    budget and the partner's rate limit

The router starts the attempts and waits; `now` is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from actors.policy.budget import RetryBudget
from actors.policy.ratelimit import TokenBucket


@dataclass
class LatencyWindow:
    """The last `size` latencies of one provider, in milliseconds."""

    size: int = 200
    _values: deque[float] = field(default_factory=deque, repr=False)

    def add(self, latency_ms: float) -> None:
        self._values.append(latency_ms)
        if len(self._values) > self.size:
            self._values.popleft()

    def __len__(self) -> int:
        return len(self._values)

    def quantile(self, q: float) -> float | None:
        if not self._values:
            return None
        ordered = sorted(self._values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class HedgePolicy:
    quantile: float = 0.95
    min_samples: int = 20         # before this, the quantile means little: no hedging
    min_delay_ms: float = 5.0
    max_delay_factor: float = 3.0  # never wait longer than this many times the median


def hedge_delay_s(window: LatencyWindow, policy: HedgePolicy) -> float | None:
    """How long to wait for the first attempt before hedging; None: do not hedge.

    A tail about as large as 1 - quantile puts the quantile itself in the
    tail, and the hedge would wait as long as the slow calls it is meant to
    cut: the delay is capped at `max_delay_factor` times the median."""
    if len(window) < policy.min_samples:
        return None
    q, median = window.quantile(policy.quantile), window.quantile(0.5)
    if q is None or median is None:
        return None
    return max(min(q, policy.max_delay_factor * median), policy.min_delay_ms) / 1000


def hedge_budget(percent: float) -> RetryBudget:
    return RetryBudget(percent=percent, min_per_s=0.5, ttl_s=10.0)


def hedge_partner(order: Sequence[str], first: str, *, hedged: bool, tried: int, used: Collection[str],
                  resorts: Collection[str], buckets: Mapping[str, TokenBucket], now: float) -> str | None:
    """Where a backup of the attempt at `first` would go, or None: no hedge.
    Only the first attempt of a round of a hedged request (`hedged`: an
    idempotent method, hedging on, not an outbox delivery) is hedged, to the
    next provider of the plan (`order`) not tried yet, never the last resort
    nor one with no free slot of its rate limit now."""
    if tried or not hedged:
        return None
    for name in order[order.index(first) + 1:]:
        if name not in used and name not in resorts and (name not in buckets or buckets[name].wait_s(now) == 0):
            return name
    return None


def hedge_after_s(window: LatencyWindow, policy: HedgePolicy, remaining_s: float) -> float | None:
    """How long the first attempt has before its backup is sent (`hedge_delay_s`);
    None when it is not hedged: too few latencies known, or no time left by then."""
    delay = hedge_delay_s(window, policy)
    return None if delay is None or delay >= remaining_s else delay


def may_send_hedge(budget: RetryBudget, partner_bucket: TokenBucket | None, now: float) -> bool:
    """Once the first attempt has taken too long: the backup goes if the hedge
    budget has room (withdrawn) and its provider's rate limit a slot (taken)."""
    if not budget.try_withdraw(now):
        return False
    return partner_bucket is None or partner_bucket.try_take(now)
