"""What a plan knows of one provider: a `Candidate`, the snapshot every
ranking policy (policy.ranking), the plan's steps (policy.planning: spent
quotas, outlier demotion, availability) and the retry hints read.

It lives below all of them so that none imports another for it: `cost` is
a field with a default (None: nothing known of its price or quota), which
`ranking.by_cost` reads and every other policy ignores.
"""

from __future__ import annotations

import enum

import msgspec

from actors.policy.health import HealthSnapshot

__all__ = ["Candidate", "CostView", "Exhaustion"]


class Exhaustion(str, enum.Enum):
    QUOTA = "quota"       # the period's quota is used up
    BALANCE = "balance"   # the provider's live balance is near zero

    def __str__(self) -> str:
        return self.value


class CostView(msgspec.Struct, frozen=True, kw_only=True):
    """What the ranking reads of a provider's cost."""

    per_call: float | None = None       # None: unknown price
    currency: str | None = None
    exhausted: Exhaustion | None = None
    resets_at: float | None = None      # when a spent quota comes back (None for a balance: the next reading says)
    quota_left: int | None = None


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    index: int                               # configured order, 0 first
    health: HealthSnapshot
    unreachable_until: float | None = None   # the router saw the actor dead or restarting
    trial_in_flight: bool = False
    rate_wait_s: float = 0.0                 # until our own rate limit for it has a free slot
    last_resort: bool = False                # the outbox: only when no real provider can take it
    cost: CostView | None = None             # its price and whether its quota is spent (policy.cost)
