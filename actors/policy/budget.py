"""The retry budget, as pure code: fallback attempts beyond a request's
first are capped to a share of recent traffic, so an outage of every
provider does not multiply the load on them (Finagle's RetryBudget, Envoy's
retry_budget).

Every request deposits one; every fallback attempt withdraws one. Within
the last `ttl_s`, at most `percent`% of requests plus `min_per_s` per second
may be retried. The clock is passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class RetryBudget:
    # Finagle and Envoy keep 20% for retries of one service; a fallback here
    # goes to another provider, and three providers failing independently at
    # 30% need one for 39% of requests. 50% still holds an outage of every
    # provider to 1.5x the load instead of max_attempts x (bench/resilience.py).
    percent: float = 50.0
    min_per_s: float = 5.0
    ttl_s: float = 10.0
    _deposits: deque[float] = field(default_factory=deque, repr=False)
    _withdrawals: deque[float] = field(default_factory=deque, repr=False)

    def _expire(self, now: float) -> None:
        horizon = now - self.ttl_s
        for q in (self._deposits, self._withdrawals):
            while q and q[0] < horizon:
                try:
                    q.popleft()
                except IndexError:   # the client's budget is shared by threads: another one expired it first
                    break

    def balance(self, now: float) -> float:
        self._expire(now)
        return self.min_per_s * self.ttl_s + self.percent / 100 * len(self._deposits) - len(self._withdrawals)

    def deposit(self, now: float) -> None:
        # Expired here too, not only in `balance` (which runs only on a
        # fallback or a hedge): under healthy traffic the deques would grow
        # by one entry per request, forever.
        self._expire(now)
        self._deposits.append(now)

    def try_withdraw(self, now: float) -> bool:
        if self.balance(now) < 1:
            return False
        self.withdraw(now)
        return True

    def withdraw(self, now: float) -> None:
        """Counts a retry that happens whatever the balance (a call the
        client must send again): it uses the budget up all the same."""
        self._expire(now)
        self._withdrawals.append(now)
