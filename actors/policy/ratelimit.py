"""A token bucket per provider, as pure code: the pace we promise a provider
(its documented limit, e.g. Airtable's 5 requests per second per base),
kept before the provider has to refuse us. The clock is passed in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float
    _tokens: float = -1.0
    _at: float = 0.0

    def _refill(self, now: float) -> None:
        if self._tokens < 0:  # first use: start full
            self._tokens, self._at = self.burst, now
            return
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = max(self._at, now)

    def try_take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_s(self, now: float) -> float:
        """Seconds until a token is free (0 if one is now)."""
        self._refill(now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate_per_s
