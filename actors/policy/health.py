"""The provider health state machine, as pure code.

A provider actor owns one `HealthSnapshot` and changes it only through
`observe()`, which takes the outcome of one attempt or probe and returns the
next snapshot plus the events the change emitted. The time of the outcome is
passed in; nothing here reads a clock.

    UNKNOWN --first outcome--> DEGRADED --healthy_after successes--> HEALTHY
                               DEGRADED --unhealthy_after failures--> UNHEALTHY
    HEALTHY --a failure--> DEGRADED
    UNHEALTHY --a success (a half-open trial or a probe)--> DEGRADED

An UNHEALTHY provider is cooling down until `cooldown_until`; routers skip it
until then and afterwards send it one trial request (see planning.py).
A rate-limited outcome does not touch health: it sets `throttled_until`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec

from actors.errors import COUNTS_AGAINST_HEALTH, ErrorKind


class Health(str, enum.Enum):
    UNKNOWN = "unknown"
    DEGRADED = "degraded"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    # Shown, never stored: a provider whose rate-limit reset has not come yet
    # (see `shown_state`). Its stored state is left as it was.
    THROTTLED = "throttled"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class HealthPolicy:
    healthy_after: int = 5          # consecutive successes DEGRADED -> HEALTHY
    unhealthy_after: int = 3        # consecutive failures -> UNHEALTHY
    cooldown_s: float = 30.0        # how long an UNHEALTHY provider is skipped
    latency_alpha: float = 0.2      # EWMA weight of the newest latency
    default_throttle_s: float = 1.0  # a 429 that named no reset time


class HealthSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    state: Health = Health.UNKNOWN
    consecutive_successes: int = 0
    consecutive_failures: int = 0
    latency_ms: float | None = None
    latency_ewma_ms: float | None = None
    total_calls: int = 0
    total_failures: int = 0                # failures that count against health
    total_ok: int = 0                      # calls the provider served: what was delivered
    last_error: str | None = None
    last_error_kind: ErrorKind | None = None
    last_checked: float | None = None      # epoch seconds of the last outcome
    cooldown_until: float | None = None    # set while UNHEALTHY
    throttled_until: float | None = None   # set by a rate-limited outcome


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one attempt or probe said about a provider."""

    at: float
    ok: bool
    latency_ms: float | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None
    retry_after_s: float | None = None


class HealthChanged(msgspec.Struct, frozen=True):
    old: Health
    new: Health
    reason: str


class Throttled(msgspec.Struct, frozen=True):
    until: float


HealthEvent = HealthChanged | Throttled


def shown_state(snap: "HealthSnapshot", now: float) -> Health:
    """The state to show an operator: THROTTLED while a rate limit holds."""
    if snap.throttled_until is not None and snap.throttled_until > now:
        return Health.THROTTLED
    return snap.state


def _next_state(state: Health, successes: int, failures: int, ok: bool, policy: HealthPolicy) -> Health:
    """The transition table. `successes`/`failures` are the counts after the outcome."""
    if ok:
        if state in (Health.UNKNOWN, Health.UNHEALTHY):
            return Health.DEGRADED
        if state is Health.DEGRADED and successes >= policy.healthy_after:
            return Health.HEALTHY
        return state
    if failures >= policy.unhealthy_after:
        return Health.UNHEALTHY
    if state in (Health.UNKNOWN, Health.HEALTHY):
        return Health.DEGRADED
    return state


def observe(snap: HealthSnapshot, outcome: Outcome, policy: HealthPolicy) -> tuple[HealthSnapshot, list[HealthEvent]]:
    """Fold one outcome into the snapshot. The only writer of health."""
    events: list[HealthEvent] = []
    latency = outcome.latency_ms
    ewma = snap.latency_ewma_ms
    if latency is not None:
        ewma = latency if ewma is None else policy.latency_alpha * latency + (1 - policy.latency_alpha) * ewma

    if outcome.error_kind is ErrorKind.RATE_LIMITED:
        wait_s = outcome.retry_after_s if outcome.retry_after_s is not None else policy.default_throttle_s
        until = outcome.at + max(0.0, wait_s)
        events.append(Throttled(until))
        return (
            msgspec.structs.replace(
                snap,
                total_calls=snap.total_calls + 1,
                last_error=outcome.error,
                last_error_kind=outcome.error_kind,
                last_checked=outcome.at,
                throttled_until=until,
            ),
            events,
        )

    if not outcome.ok and outcome.error_kind not in COUNTS_AGAINST_HEALTH:
        # The request's fault, not the provider's: count the call, nothing else.
        return (
            msgspec.structs.replace(
                snap,
                total_calls=snap.total_calls + 1,
                last_error=outcome.error,
                last_error_kind=outcome.error_kind,
                last_checked=outcome.at,
                latency_ms=latency if latency is not None else snap.latency_ms,
                latency_ewma_ms=ewma,
            ),
            events,
        )

    if outcome.ok:
        successes, failures = snap.consecutive_successes + 1, 0
    else:
        successes, failures = 0, snap.consecutive_failures + 1
    state = _next_state(snap.state, successes, failures, outcome.ok, policy)
    if state is not snap.state:
        reason = (
            f"{successes} consecutive successes" if outcome.ok else f"{failures} consecutive failures ({outcome.error_kind})"
        )
        events.append(HealthChanged(snap.state, state, reason))

    cooldown_until = None
    if state is Health.UNHEALTHY:
        cooldown_until = outcome.at + policy.cooldown_s
    new = HealthSnapshot(
        state=state,
        consecutive_successes=successes,
        consecutive_failures=failures,
        latency_ms=latency if latency is not None else snap.latency_ms,
        latency_ewma_ms=ewma,
        total_calls=snap.total_calls + 1,
        total_failures=snap.total_failures + (0 if outcome.ok else 1),
        total_ok=snap.total_ok + (1 if outcome.ok else 0),
        last_error=snap.last_error if outcome.ok else outcome.error,
        last_error_kind=snap.last_error_kind if outcome.ok else outcome.error_kind,
        last_checked=outcome.at,
        cooldown_until=cooldown_until,
        # A success proves the provider takes requests again.
        throttled_until=None if outcome.ok else snap.throttled_until,
    )
    return new, events
