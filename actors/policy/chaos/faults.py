"""Live fault injection for game days, as pure code: what a fault is, which
faults are allowed, what a fault does to one call, and the book of active
faults with its events.

A fault is set on one real provider of a running gateway
(`aicmo-gateway chaos inject CAPABILITY PROVIDER [--fail RATE]
[--latency-ms MS] [--error KIND] --for SECONDS`), like Envoy's fault
filter: a share of calls delayed by a fixed time, a share failed with an
error kind, or both (delayed, then failed). It expires by itself at an
absolute time, and who set it, when, is kept with it for the audit log.

The provider actor applies it before the adapter is called (`apply`), so a
failed call never reaches the provider: it costs nothing (cost.Charge.FREE)
and delivers nothing, yet the router sees the error kind as from a real
provider and reacts as it would (health, fallback, outlier ejection), which
is what a game day is for. `apply` takes the random source and the time as
arguments; nothing here reads a clock or draws a random number itself.

One active fault per provider: a new one replaces the old (`inject`).

    ChaosBook --inject--> FaultInjected (replaced: the fault it replaced, if any)
              --clear---> FaultCleared (by whom)
              --expire--> FaultExpired (at its expires_at)
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

import msgspec

from actors.errors import ErrorKind, InvalidFault

__all__ = [
    "INJECTABLE_KINDS", "ChaosAction", "ChaosBook", "ChaosDecision", "ChaosEvent", "ChaosPolicy", "Fault",
    "FaultCleared", "FaultExpired", "FaultInjected", "FaultProblem", "InvalidFault", "Random", "active", "apply",
    "check_held", "clear", "expire", "inject", "new_fault", "rebuilt",
]

# What a provider can do to a call; not the router's own kinds (unavailable,
# cancelled), nor the request's (invalid_request, not_supported).
INJECTABLE_KINDS = frozenset({
    ErrorKind.TRANSIENT, ErrorKind.TIMEOUT, ErrorKind.RATE_LIMITED, ErrorKind.AUTH, ErrorKind.MALFORMED_RESPONSE,
    ErrorKind.CRASHED,
})


# How far a provider's node clock may be behind the supervisor's before a
# fault's time left, read on it, counts as too long.
CLOCK_SKEW_S = 60.0


class Random(Protocol):
    """The random source `apply` draws from (random.Random fits)."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class ChaosPolicy:
    allowed: bool = False                # off unless the config allows it (the sandbox and demo configs do)
    max_duration_s: float = 3600.0       # a forgotten fault ends within the hour
    max_latency_ms: float = 60_000.0


class Fault(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    capability: str
    provider: str
    fail_rate: float = 0.0                       # share of calls failed, 0..1
    error: ErrorKind = ErrorKind.TRANSIENT       # the kind a failed call gets
    retry_after_s: float | None = None           # with rate_limited: the reset the fake 429 names
    latency_ms: float = 0.0                      # added before the call
    delay_rate: float = 1.0                      # share of calls delayed, 0..1
    injected_at: float
    expires_at: float                            # absolute, epoch seconds
    injected_by: str                             # who set it (user@host)

    @property
    def key(self) -> str:
        return f"{self.capability}/{self.provider}"

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


class FaultProblem(str, enum.Enum):
    FORBIDDEN = "forbidden"                      # chaos.allowed is false
    UNKNOWN_PROVIDER = "unknown_provider"
    NOTHING_TO_INJECT = "nothing_to_inject"
    RATE_OUT_OF_RANGE = "rate_out_of_range"
    KIND_NOT_INJECTABLE = "kind_not_injectable"
    LATENCY_OUT_OF_RANGE = "latency_out_of_range"
    DURATION_OUT_OF_RANGE = "duration_out_of_range"
    RETRY_AFTER_WITHOUT_RATE_LIMIT = "retry_after_without_rate_limit"

    def __str__(self) -> str:
        return self.value


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def new_fault(capability: str, provider: str, *, duration_s: float, now: float, by: str, fault_id: str,
              fail_rate: float | None = None, latency_ms: float | None = None, error: ErrorKind | str | None = None,
              delay_rate: float | None = None, retry_after_s: float | None = None,
              policy: ChaosPolicy = ChaosPolicy(), known: Mapping[str, Collection[str]] | None = None) -> Fault:
    """A validated fault, or InvalidFault naming every problem. `--error`
    alone fails every call; `--fail` alone fails with `transient`. `known`
    maps each capability to its real providers (not the outbox)."""
    problems: list[tuple[FaultProblem, str]] = []
    if not policy.allowed:
        problems.append((FaultProblem.FORBIDDEN,
                         "fault injection is forbidden by this gateway's config (chaos.allowed: false)"))
    if known is not None and provider not in known.get(capability, ()):
        problems.append((FaultProblem.UNKNOWN_PROVIDER, f"no provider {provider!r} under capability {capability!r}"))
    kind: ErrorKind = ErrorKind.TRANSIENT
    if error is not None:
        try:
            kind = ErrorKind(error)
        except ValueError:
            kind = ErrorKind.TRANSIENT
            problems.append((FaultProblem.KIND_NOT_INJECTABLE, f"{error!r} is not an error kind"))
        else:
            if kind not in INJECTABLE_KINDS:
                problems.append((FaultProblem.KIND_NOT_INJECTABLE, f"{kind} cannot be injected; use one of "
                                 f"{', '.join(sorted(k.value for k in INJECTABLE_KINDS))}"))
    rate = fail_rate if fail_rate is not None else (1.0 if error is not None else 0.0)
    delay = latency_ms if latency_ms is not None else 0.0
    share = delay_rate if delay_rate is not None else 1.0
    for name, value in (("the failure rate", rate), ("the delayed share", share)):
        if not _finite(value) or not 0 <= value <= 1:
            problems.append((FaultProblem.RATE_OUT_OF_RANGE, f"{name} must be within 0..1, not {value}"))
    if not _finite(delay) or not 0 <= delay <= policy.max_latency_ms:
        problems.append((FaultProblem.LATENCY_OUT_OF_RANGE,
                         f"the added latency must be within 0..{policy.max_latency_ms:.0f} ms, not {delay}"))
    if not _finite(duration_s) or not 0 < duration_s <= policy.max_duration_s:
        problems.append((FaultProblem.DURATION_OUT_OF_RANGE,
                         f"--for must be more than 0 and at most {policy.max_duration_s:.0f} s, not {duration_s}"))
    if retry_after_s is not None and (kind is not ErrorKind.RATE_LIMITED or not _finite(retry_after_s) or retry_after_s < 0):
        problems.append((FaultProblem.RETRY_AFTER_WITHOUT_RATE_LIMIT,
                         "a retry-after goes with --error rate_limited, as a number of seconds"))
    if rate == 0 and delay == 0:
        problems.append((FaultProblem.NOTHING_TO_INJECT,
                         "give a failure rate (--fail), an error (--error) or a latency (--latency-ms)"))
    if problems:
        raise InvalidFault(problems)
    # A fake 429's reset never outlasts the fault: the router would keep the
    # provider throttled after the game day ended.
    retry_after = min(retry_after_s, duration_s) if retry_after_s is not None else None
    return Fault(id=fault_id, capability=capability, provider=provider, fail_rate=float(rate), error=kind,
                 retry_after_s=retry_after, latency_ms=float(delay), delay_rate=float(share), injected_at=now,
                 expires_at=now + duration_s, injected_by=by)


def rebuilt(fault: Fault, *, now: float, policy: ChaosPolicy,
            known: Mapping[str, Collection[str]] | None = None) -> Fault:
    """The fault a caller asked for, rebuilt on the receiver's clock: the
    duration asked (its `expires_at - injected_at`) from `now`, never the
    caller's own times, which could put a fault's end a month ahead of a
    `max_duration_s` checked against the caller's clock. InvalidFault as
    `new_fault`."""
    return new_fault(fault.capability, fault.provider, duration_s=fault.expires_at - fault.injected_at, now=now,
                     by=fault.injected_by, fault_id=fault.id, fail_rate=fault.fail_rate, latency_ms=fault.latency_ms,
                     error=fault.error, delay_rate=fault.delay_rate, retry_after_s=fault.retry_after_s,
                     policy=policy, known=known)


def check_held(fault: Fault, *, now: float, policy: ChaosPolicy, capability: str, provider: str) -> None:
    """What a provider actor checks before it holds a fault, whoever sent
    it: its own capability and name, allowed by its config, and the time
    left (on its clock) within `max_duration_s`, give or take the nodes'
    clock skew. InvalidFault otherwise."""
    left = fault.expires_at - now
    if left <= 0:
        return  # already over on this clock: held, it is dropped at the next look
    bounds = dataclasses.replace(policy, max_duration_s=policy.max_duration_s + CLOCK_SKEW_S)
    new_fault(fault.capability, fault.provider, duration_s=left, now=now, by=fault.injected_by,
              fault_id=fault.id, fail_rate=fault.fail_rate, latency_ms=fault.latency_ms, error=fault.error,
              delay_rate=fault.delay_rate, retry_after_s=fault.retry_after_s, policy=bounds,
              known={capability: [provider]})


class ChaosAction(str, enum.Enum):
    PASS = "pass"     # call the adapter as usual
    DELAY = "delay"   # wait delay_ms, then call the adapter
    FAIL = "fail"     # wait delay_ms (if any), then fail with `error`; the adapter is not called

    def __str__(self) -> str:
        return self.value


class ChaosDecision(msgspec.Struct, frozen=True, kw_only=True):
    action: ChaosAction
    delay_ms: float = 0.0
    error: ErrorKind | None = None
    retry_after_s: float | None = None
    fault_id: str | None = None
    expired: bool = False     # the fault given was past its expiry: remove it (`expire`)


_PASS = ChaosDecision(action=ChaosAction.PASS)


def apply(fault: Fault | None, rng: Random, now: float) -> ChaosDecision:
    """What one call goes through. Draws once for the delay when the fault
    has one, then once for the failure when it has one, in that order, so a
    seeded source gives the same decisions every run."""
    if fault is None:
        return _PASS
    if fault.expired(now):
        return ChaosDecision(action=ChaosAction.PASS, fault_id=fault.id, expired=True)
    delay = fault.latency_ms if fault.latency_ms > 0 and rng.random() < fault.delay_rate else 0.0
    if fault.fail_rate > 0 and rng.random() < fault.fail_rate:
        retry_after = (min(fault.retry_after_s, fault.expires_at - now)
                       if fault.error is ErrorKind.RATE_LIMITED and fault.retry_after_s is not None else None)
        return ChaosDecision(action=ChaosAction.FAIL, delay_ms=delay, error=fault.error, retry_after_s=retry_after,
                             fault_id=fault.id)
    if delay > 0:
        return ChaosDecision(action=ChaosAction.DELAY, delay_ms=delay, fault_id=fault.id)
    return ChaosDecision(action=ChaosAction.PASS, fault_id=fault.id)


class FaultInjected(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    fault: Fault
    replaced: Fault | None = None


class FaultCleared(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    fault: Fault
    at: float
    by: str


class FaultExpired(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    fault: Fault
    at: float


ChaosEvent = FaultInjected | FaultCleared | FaultExpired


class ChaosBook(msgspec.Struct, frozen=True):
    """The active faults, one per provider, keyed by `capability/provider`."""

    faults: dict[str, Fault] = {}


def inject(book: ChaosBook, fault: Fault) -> tuple[ChaosBook, list[ChaosEvent]]:
    replaced = book.faults.get(fault.key)
    return ChaosBook({**book.faults, fault.key: fault}), [FaultInjected(fault=fault, replaced=replaced)]


def clear(book: ChaosBook, now: float, by: str, capability: str | None = None,
          provider: str | None = None) -> tuple[ChaosBook, list[ChaosEvent]]:
    """Remove the faults of one provider, of one capability, or all."""
    def matches(f: Fault) -> bool:
        return (capability is None or f.capability == capability) and (provider is None or f.provider == provider)

    gone = [f for f in book.faults.values() if matches(f)]
    return (ChaosBook({k: f for k, f in book.faults.items() if not matches(f)}),
            [FaultCleared(fault=f, at=now, by=by) for f in sorted(gone, key=lambda f: f.key)])


def expire(book: ChaosBook, now: float) -> tuple[ChaosBook, list[ChaosEvent]]:
    gone = [f for f in book.faults.values() if f.expired(now)]
    return (ChaosBook({k: f for k, f in book.faults.items() if not f.expired(now)}),
            [FaultExpired(fault=f, at=f.expires_at) for f in sorted(gone, key=lambda f: f.key)])


def active(book: ChaosBook, capability: str, provider: str, now: float) -> Fault | None:
    """The fault on one provider, if one is set and not expired."""
    fault = book.faults.get(f"{capability}/{provider}")
    return fault if fault is not None and not fault.expired(now) else None
