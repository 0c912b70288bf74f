"""When a request that no provider could take may succeed if sent again,
as pure code over the router's candidates (policy.ranking.Candidate).

A caller told "every provider is throttled" (HTTP 429) or "none available
now" (503) gets a Retry-After: the earliest moment a real provider that was
blocked frees up (its throttle's reset, our rate limit's next slot, the end
of its cooldown, or of the backoff after its actor was unreachable).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from actors.policy.health import Health
from actors.policy.ranking import Candidate
from actors.policy.skips import SkipReason

__all__ = ["THROTTLES", "RetryHint", "retry_hint"]


class RetryHint(msgspec.Struct, frozen=True):
    throttled: bool                # every real provider is throttled or at its rate limit
    after_s: float | None          # None: some provider is free now, or nothing says when


def _blocked_for(c: Candidate, now: float) -> tuple[SkipReason, float] | None:
    h = c.health
    if h.throttled_until is not None and h.throttled_until > now:
        return SkipReason.THROTTLED, h.throttled_until - now
    if c.rate_wait_s > 0:
        return SkipReason.RATE_LIMITED, c.rate_wait_s
    if c.unreachable_until is not None and c.unreachable_until > now:
        return SkipReason.UNREACHABLE, c.unreachable_until - now
    if h.state is Health.UNHEALTHY and h.cooldown_until is not None and h.cooldown_until > now:
        return SkipReason.COOLING_DOWN, h.cooldown_until - now
    return None


# Waits that a 429 (HTTP) means: the provider's throttle, or our own rate limit.
THROTTLES = frozenset({SkipReason.THROTTLED, SkipReason.RATE_LIMITED})


def retry_hint(candidates: Sequence[Candidate], now: float) -> RetryHint:
    real = [c for c in candidates if not c.last_resort]
    blocked = [_blocked_for(c, now) for c in real]
    if not real or any(b is None for b in blocked):
        return RetryHint(throttled=False, after_s=None)
    waits = [b for b in blocked if b is not None]
    return RetryHint(throttled=all(why in THROTTLES for why, _ in waits), after_s=min(s for _, s in waits))
