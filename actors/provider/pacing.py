"""The provider's configured rate limit (`policy.provider.rate_limit_per_s`),
held by the provider actor, so that it holds for the capability whatever
the number of routers sending to it (a bucket per router multiplied the
limit by their number, as LiteLLM's users found: BerriAI/litellm#27736).

Each attempt takes a slot just before the adapter sends, inside the
concurrency limit (a slot taken earlier could be spent later, bunched
with others). An attempt may wait for its slot for as long as the router
allows (`CallContext.pace_s`: a moment when it has another provider to
try, else its time) and never more than half the attempt's time, which
is left for the call itself. A slot further off is refused (`AtRateLimit`, a decision, not an error): the reply says when the next is free (`CallReply.paced_until`),
the router leaves the provider out of its plans until then, and nothing
is counted against the provider's health or spend: it was never asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.messages import CallContext
from actors.policy.ratelimit import TokenBucket
from actors.specs import ProviderSpec

__all__ = ["AtRateLimit", "Pacing", "max_pace_s"]

# Share of an attempt's time that may go to waiting for a slot; the rest is the call's.
PACE_SHARE = 0.5


@dataclass(frozen=True)
class AtRateLimit:
    """No slot of the provider's rate limit within the time the attempt may wait."""

    provider: str
    rate_per_s: float
    wait_s: float     # until the next free slot
    free_at: float    # wall time of the next free slot

    def __str__(self) -> str:
        return (f"{self.provider}: at its configured rate limit of {self.rate_per_s:g}/s, held for every router "
                f"(next slot in {self.wait_s:.2f}s)")


def max_pace_s(ctx: CallContext, fault_delay_s: float = 0.0) -> float:
    """How long this attempt may wait for a slot."""
    budget = max(0.0, ctx.timeout_s - fault_delay_s) * PACE_SHARE
    return budget if ctx.pace_s is None else max(0.0, min(ctx.pace_s, budget))


class Pacing:
    def __init__(self, spec: ProviderSpec):
        self.provider = spec.name
        self.bucket = (TokenBucket(spec.rate_limit_per_s, spec.rate_limit_burst or max(1.0, spec.rate_limit_per_s))
                       if spec.rate_limit_per_s else None)

    def slot(self, now: float, max_wait_s: float) -> float | AtRateLimit:
        """Takes a slot: the seconds to wait for it (0 with no rate limit);
        AtRateLimit, and nothing taken, if none is free within `max_wait_s`."""
        if self.bucket is None:
            return 0.0
        wait = self.bucket.reserve(now, max_wait_s)
        if wait is None:
            free_in = self.bucket.wait_s(now)
            return AtRateLimit(self.provider, self.bucket.rate_per_s, free_in, now + free_in)
        return wait
