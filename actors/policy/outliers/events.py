"""The types outlier ejection (`policy.outlier`) reports in: where a sample
came from, why a provider was ejected, returned, reinstated or spared, the
evidence a criterion read, and the events a sweep emits (frozen, tagged:
`ops.audit.outlier_record` audits them as they are)."""

from __future__ import annotations

import enum

import msgspec

__all__ = [
    "EjectReason", "Ejected", "Evidence", "OutlierEvent", "PanicEnded", "PanicStarted", "ReinstateReason",
    "Reinstated", "ReturnReason", "Returned", "Source", "SpareReason", "Spared",
]


class Source(str, enum.Enum):
    LIVE = "live"     # a request's attempt
    PROBE = "probe"   # a health-check probe (the supervisor's self-check)

    def __str__(self) -> str:
        return self.value


class EjectReason(str, enum.Enum):
    FAILURE_PERCENTAGE = "failure_percentage"
    SUCCESS_RATE = "success_rate"
    SLOW_CALLS = "slow_calls"

    def __str__(self) -> str:
        return self.value


class ReturnReason(str, enum.Enum):
    TIME_SERVED = "time_served"   # its ejection time is over
    DISABLED = "disabled"         # outlier ejection was turned off

    def __str__(self) -> str:
        return self.value


class ReinstateReason(str, enum.Enum):
    CLEARED = "cleared"           # a sweep with enough evidence found it no outlier
    DISABLED = "disabled"         # outlier ejection, or its probation, was turned off

    def __str__(self) -> str:
        return self.value


class SpareReason(str, enum.Enum):
    MAX_EJECTED = "max_ejected"   # an outlier, left in: max_ejection_percent is reached

    def __str__(self) -> str:
        return self.value


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """The numbers a criterion read. `threshold` is what it compared with:
    a success rate (0..1), a failure percentage, or a latency in ms."""

    source: Source
    requests: int
    failures: int = 0
    success_rate: float | None = None
    threshold: float | None = None
    median_ms: float | None = None
    peer_median_ms: float | None = None
    slow_calls: int = 0
    slow_call_rate: float | None = None


class Ejected(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    name: str
    at: float
    until: float
    reason: EjectReason
    evidence: Evidence
    ejections: int           # the multiplier this ejection used


class Returned(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    name: str
    at: float
    reason: ReturnReason
    ejected_at: float | None


class Reinstated(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A provider on probation (returned from an ejection, still tried after
    the rest) fully back: a sweep that could judge it found it no outlier."""

    name: str
    at: float
    reason: ReinstateReason
    ejected_at: float | None     # when the ejection it served began
    evidence: Evidence | None = None   # what cleared it (None when DISABLED)


class Spared(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """An outlier left in rotation, and why."""

    name: str
    at: float
    reason: SpareReason
    outlier: EjectReason
    evidence: Evidence
    ejected: int             # providers ejected when it was found
    max_ejected: int


class PanicStarted(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    at: float
    available: int
    total: int


class PanicEnded(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    at: float
    available: int
    total: int


OutlierEvent = Ejected | Returned | Reinstated | Spared | PanicStarted | PanicEnded
