"""When to send a hedged request, as pure code.

For idempotent methods only: if the first attempt has not answered after
the provider's recent `quantile` latency, a backup goes to the next provider
and the first success wins (Dean & Barroso, "The Tail at Scale"). Hedges
draw on a budget of their own, so a slow provider cannot double the load.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from actors.policy.budget import RetryBudget


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
