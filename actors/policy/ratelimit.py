"""A token bucket per provider, as pure code: the pace we promise a provider
(its documented limit, e.g. Airtable's 5 requests per second per base),
kept before the provider has to refuse us. The clock is passed in.

Two hold one: the provider actor's (actors/provider/pacing.py), the one
that counts, since every router of the capability sends through it; and
each router's, a local first gate that skips or waits without a round
trip (actors/router/provider_views.py). The provider's reserves slots
ahead (`reserve`): a request that may wait gets the next free slot, and
the tokens go below zero by the slots promised, so two waiters never share one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TokenBucket"]


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float
    _tokens: float = 0.0
    _at: float = 0.0
    _started: bool = False

    def _refill(self, now: float) -> None:
        if not self._started:  # first use: start full
            self._tokens, self._at, self._started = self.burst, now, True
            return
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate_per_s)
        self._at = max(self._at, now)

    def try_take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_s(self, now: float) -> float:
        """Seconds until a token is free (0 if one is now), after the slots already reserved."""
        self._refill(now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate_per_s

    def reserve(self, now: float, max_wait_s: float) -> float | None:
        """Takes the next free slot if it comes within `max_wait_s`: the
        seconds to wait for it (0: now). None, and nothing taken, if it comes later."""
        wait = self.wait_s(now)
        if wait > max_wait_s:
            return None
        self._tokens -= 1
        return wait
