"""Whether a request tries the next provider of its plan now, as pure code.

The router walks its plan (policy.planning) one provider at a time; before
each attempt it builds a `Turn` (a snapshot: the request's time left, its
attempts so far, the provider's recent speed, the budget and the rate
limit) and asks each gate in `GATES`, in order. Like tenacity's stop and
wait strategies, each gate is a small callable reading that one object; it
answers None (go on) or a verdict:

    Skip(reason, detail)  not this provider (policy.skips); the next one
    Stop()                the request's deadline has passed: deadline_exceeded
    Wait(seconds)         sleep, then ask this gate again (a rate-limit slot)
    Replan(seconds)       a Wait with `replan`: sleep, then plan the request
                          anew (a throttle's reset)

Waiting for a throttle is decided here and only here, as one verdict,
`Wait`: for a slot of our own rate limit (`rate_limit`), or for the reset
of every real provider's throttle (`wait_for_reset`), which the router asks
both before a request's first attempt (the plan has no real provider to
try: `Plan.reset_in_s`) and at the outbox's turn (`wait_for_a_reset`, at
most MAX_RESET_WAITS times a request). The router only sleeps.

Nothing here reads a clock or sleeps: `now` and the time left are in the
turn, and the router does the waiting. The retry budget and the token
bucket are pure policy objects given `now`; the gates that pass take from
them (a withdrawal, a slot), as the attempt that follows uses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from actors.policy.budget import RetryBudget
from actors.policy.hedging import LatencyWindow
from actors.policy.ratelimit import TokenBucket
from actors.policy.skips import Skip, SkipReason

__all__ = [
    "FEASIBLE_MIN_SAMPLES",
    "FEASIBLE_QUANTILE",
    "GATES",
    "MAX_RESET_WAITS",
    "MIN_ATTEMPT_S",
    "Gate",
    "Replan",
    "Stop",
    "Turn",
    "Verdict",
    "Wait",
    "deadline",
    "fastest_ms",
    "feasible",
    "max_attempts",
    "outbox_while_draining",
    "rate_limit",
    "retry_budget",
    "wait_for_a_reset",
    "wait_for_reset",
]

# Below this much time left, no attempt can finish: answer deadline_exceeded.
MIN_ATTEMPT_S = 0.005
# An attempt is not started when even the provider's fastest recent answers
# (this quantile of its latency, once this many are known) would not fit in the time left.
FEASIBLE_QUANTILE = 0.1
FEASIBLE_MIN_SAMPLES = 10
# Times a request that had its turn at the outbox waits for a throttled
# provider's reset and plans again (a wait before its first attempt is bounded by the deadline alone).
MAX_RESET_WAITS = 3


@dataclass(frozen=True)
class Turn:
    """One provider's turn in one request's plan: everything a gate reads."""

    name: str
    last_resort: bool = False            # the outbox
    draining: bool = False               # the request is an outbox item being delivered
    tried: int = 0                       # attempts so far that counted (not cancelled, not unsupported)
    max_attempts: int = 3                # routing.max_attempts
    remaining_s: float = math.inf        # until the request's deadline
    fastest_ms: float | None = None      # the provider's fastest recent answers (`fastest_ms`); None: too few seen
    now: float = 0.0                     # wall time, for the budget and the bucket
    budget: RetryBudget | None = None    # the router's retry budget
    bucket: TokenBucket | None = None    # our configured rate limit for this provider, if any
    alternative: bool = False            # a real provider is left to try after this one
    wait_for_throttle: bool = True       # routing.wait_for_throttle
    waits_left: int = 0                  # times the request may still wait for a reset and plan again
    reset_in_s: float | None = None      # the outbox's turn: when the first throttled real provider frees
    #                                      up, if no real provider is free now (else None)


@dataclass(frozen=True)
class Stop:
    """The request's deadline has passed: it ends as deadline_exceeded."""


@dataclass(frozen=True)
class Wait:
    """Sleep this long, then ask the same gate again; with `replan`, plan
    the request anew instead (what the plan said may have changed)."""

    seconds: float
    replan: bool = False


def Replan(seconds: float) -> Wait:  # noqa: N802 - named as the verdict it makes
    """Sleep this long, then plan the request anew."""
    return Wait(seconds, replan=True)


Verdict = Skip | Stop | Wait
Gate = Callable[[Turn], "Verdict | None"]


def fastest_ms(window: LatencyWindow) -> float | None:
    """A provider's fastest recent answers (`Turn.fastest_ms`); None until enough are known."""
    return window.quantile(FEASIBLE_QUANTILE) if len(window) >= FEASIBLE_MIN_SAMPLES else None


def wait_for_reset(reset_in_s: float | None, remaining_s: float, wait_for_throttle: bool) -> Wait | None:
    """The one wait for a throttle's reset: no real provider can be tried
    now, and the first to free up (`reset_in_s`: its 429's reset, or our
    rate limit's next slot) does so before the deadline: wait for it, then
    plan anew, rather than queue the request or fail it."""
    if not wait_for_throttle or reset_in_s is None or reset_in_s > remaining_s - MIN_ATTEMPT_S:
        return None
    return Replan(reset_in_s)


def outbox_while_draining(t: Turn) -> Verdict | None:
    """An outbox item being delivered is never queued in the outbox again."""
    if t.last_resort and t.draining:
        return Skip(t.name, SkipReason.DRAINING)
    return None


def wait_for_a_reset(t: Turn) -> Verdict | None:
    """Before a request is queued: if every real provider is only throttled
    (or at its rate limit) and the earliest reset comes before the deadline,
    wait for it rather than queue or fail (`wait_for_reset`)."""
    if not (t.last_resort and t.waits_left > 0):
        return None
    return wait_for_reset(t.reset_in_s, t.remaining_s, t.wait_for_throttle)


def max_attempts(t: Turn) -> Verdict | None:
    """Real providers are tried at most routing.max_attempts times; the outbox always may be."""
    if t.tried >= t.max_attempts and not t.last_resort:
        return Skip(t.name, SkipReason.MAX_ATTEMPTS)
    return None


def deadline(t: Turn) -> Verdict | None:
    if t.remaining_s < MIN_ATTEMPT_S:
        return Stop()
    return None


def feasible(t: Turn) -> Verdict | None:
    """An attempt is not started when even the provider's fastest recent
    answers would not fit in the time left."""
    if t.fastest_ms is not None and t.remaining_s * 1000 < t.fastest_ms and not t.last_resort:
        return Skip(t.name, SkipReason.INFEASIBLE, f"cannot answer in the {t.remaining_s * 1000:.0f} ms left "
                                                   f"(its fastest recent: {t.fastest_ms:.0f} ms)")
    return None


def retry_budget(t: Turn) -> Verdict | None:
    """A fallback (any attempt after a request's first) draws on the retry
    budget; the outbox and outbox deliveries do not."""
    if t.tried >= 1 and not t.last_resort and not t.draining and t.budget is not None \
            and not t.budget.try_withdraw(t.now):
        return Skip(t.name, SkipReason.RETRY_BUDGET,
                    "retry budget spent: fallbacks are capped to a share of recent traffic")
    return None


def rate_limit(t: Turn) -> Verdict | None:
    """A slot of the provider's configured rate. With no other real provider
    left to try, wait for one if the deadline allows."""
    if t.bucket is None or t.bucket.try_take(t.now):
        return None
    wait_s = t.bucket.wait_s(t.now)
    if not t.alternative and t.wait_for_throttle and wait_s <= t.remaining_s - MIN_ATTEMPT_S:
        return Wait(wait_s)
    return Skip(t.name, SkipReason.RATE_LIMITED, "at its configured rate limit")


# In this order: a later gate may take from the budget or the bucket only
# once the earlier ones let the attempt go ahead.
GATES: tuple[Gate, ...] = (outbox_while_draining, wait_for_a_reset, max_attempts, deadline, feasible, retry_budget,
                           rate_limit)
