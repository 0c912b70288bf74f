"""Why a provider is not tried for a request, as a closed set of kinds.

Routing decides on the `reason`; the `detail` is for people (status, the
audit log, error messages) and may be reworded freely: nothing parses it
(as Ray Serve's request router reports typed skips, not messages).

    from the plan (policy.planning), the provider's state:
      UNREACHABLE      its actor is dead or restarting: left out
      THROTTLED        its 429's reset has not come: left out
      RATE_LIMITED     our configured rate limit for it has no free slot: left out
      COOLING_DOWN     unhealthy, its cooldown not over: tried last
      TRIAL_IN_FLIGHT  unhealthy, another request is its half-open trial: tried last
      QUOTA_EXHAUSTED  its quota for the period is spent or its balance is near
                       zero (policy.cost): left out, never counted against health
      OUTLIER_EJECTED  outlier ejection took it out of rotation for a while
                       (policy.outlier): tried after every provider not ejected
      OUTLIER_PROBATION its ejection is over, but no sweep has cleared it yet
                       (policy.outlier.probation): tried after the rest too
      DELIVERY_EJECTED its delivery events say it drops what it accepts
                       (policy.delivery_health): tried after every other
                       provider, panic or not
    from the gates (policy.gates), this request's turn at it:
      DRAINING         the outbox, while its own items are delivered
      MAX_ATTEMPTS     the request has had routing.max_attempts tries
      INFEASIBLE       its fastest recent answers do not fit in the time left
      RETRY_BUDGET     fallbacks are capped to a share of recent traffic now
      RATE_LIMITED     (again) no free slot, and another provider is left to try
"""

from __future__ import annotations

import enum

import msgspec

__all__ = ["DEFERRED", "UNRECORDED", "Skip", "SkipReason"]


class SkipReason(str, enum.Enum):
    UNREACHABLE = "unreachable"
    THROTTLED = "throttled"
    RATE_LIMITED = "rate_limited"
    COOLING_DOWN = "cooling_down"
    TRIAL_IN_FLIGHT = "trial_in_flight"
    DRAINING = "draining"
    MAX_ATTEMPTS = "max_attempts"
    INFEASIBLE = "infeasible"
    RETRY_BUDGET = "retry_budget"
    QUOTA_EXHAUSTED = "quota_exhausted"
    OUTLIER_EJECTED = "outlier_ejected"
    OUTLIER_PROBATION = "outlier_probation"
    DELIVERY_EJECTED = "delivery_ejected"

    def __str__(self) -> str:
        return self.value


# Unhealthy providers are not left out but put at the end of the order.
DEFERRED = frozenset({SkipReason.COOLING_DOWN, SkipReason.TRIAL_IN_FLIGHT, SkipReason.OUTLIER_EJECTED,
                      SkipReason.OUTLIER_PROBATION, SkipReason.DELIVERY_EJECTED})
# Turns passed over without a word in the request's record (its Decision's
# `skipped`): the plan already shows them, and they say nothing of the provider.
UNRECORDED = frozenset({SkipReason.DRAINING, SkipReason.MAX_ATTEMPTS})


class Skip(msgspec.Struct, frozen=True):
    name: str
    reason: SkipReason
    detail: str = ""   # for people: "throttled for 3.0s more"
