"""When a request that no provider could take may succeed if sent again,
as pure code over the router's candidates (policy.candidate.Candidate).

A caller told "every provider is throttled" (HTTP 429) or "none available
now" (503) gets a Retry-After: the earliest moment a real provider that was
blocked frees up (its throttle's reset, our rate limit's next slot, the end
of its cooldown, or of the backoff after its actor was unreachable), or
the turn of the first spent quota's period (`quota_hint`).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from actors.policy.candidate import Candidate
from actors.policy.cost.quota import quota_retry_after_s
from actors.policy.health import Health
from actors.policy.skips import SkipReason

__all__ = ["THROTTLES", "RetryHint", "quota_hint", "retry_hint"]


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


def _spent(c: Candidate) -> bool:
    view = c.cost
    return not c.last_resort and view is not None and view.exhausted is not None


def quota_hint(candidates: Sequence[Candidate], now: float) -> RetryHint:
    """`retry_hint`, with spent quotas: when every real provider is spent
    (or blocked otherwise), the earliest moment one comes back."""
    spent = [c for c in candidates if _spent(c)]
    if not spent:
        return retry_hint(candidates, now)
    rest = [c for c in candidates if not _spent(c)]
    after = quota_retry_after_s(spent, now)
    if not any(not c.last_resort for c in rest):
        return RetryHint(throttled=False, after_s=after)
    hint = retry_hint(rest, now)
    if hint.after_s is None:
        return hint
    return RetryHint(throttled=False, after_s=min(hint.after_s, after) if after is not None else hint.after_s)
