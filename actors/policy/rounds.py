"""Whether a request that every provider failed is tried again, and after
how long, as pure code.

A round is one walk through the request's plan. When every attempt of a
round failed in a way that may pass by the next one (`PASSING_KINDS`: the
provider's or its actor's trouble, not the request's (invalid, auth,
unsupported) nor a throttle, whose reset the request waits for instead:
policy/gates.py), the request is tried again after a pause with full
jitter, uniform up to `retry_backoff_ms * 2^rounds` and capped at
`retry_backoff_max_ms` (Envoy's retry back-off), while
`routing.retry_rounds`, the deadline and the retry budget allow. Never a
request the outbox took (the queue is its retry), nor an outbox item being
delivered.

As with the gates, the decision reads one snapshot (`RoundEnd`); the
randomness is passed in, and the router does the sleeping. The retry
budget is a pure policy object given `now`: a round that goes ahead
withdraws from it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from actors.errors import ErrorKind
from actors.policy.budget import RetryBudget
from actors.policy.gates import MIN_ATTEMPT_S

__all__ = ["PASSING_KINDS", "Backoff", "RoundEnd", "next_round", "round_pause_s", "worth_another_round"]

# Failures that may pass by the next round.
PASSING_KINDS = frozenset({ErrorKind.TRANSIENT, ErrorKind.TIMEOUT, ErrorKind.UNAVAILABLE, ErrorKind.CRASHED,
                           ErrorKind.MALFORMED_RESPONSE})


class Attempted(Protocol):
    """What the decision reads of an attempt (messages.Attempt)."""

    @property
    def error_kind(self) -> ErrorKind | None: ...


@dataclass(frozen=True)
class Backoff:
    """routing.retry_rounds, retry_backoff_ms, retry_backoff_max_ms."""

    rounds: int = 5
    base_ms: float = 50.0
    max_ms: float = 1000.0


class RoundEnd(msgspec.Struct, frozen=True, kw_only=True):
    """How a round of one request ended: everything `next_round` reads."""

    error_kind: ErrorKind | None          # the round's answer: None when it succeeded
    in_outbox: bool = False               # the outbox holds it (queued, or parked with an unknown outcome)
    draining: bool = False                # it is an outbox item being delivered
    attempts: Sequence[Attempted] = ()    # every attempt of the request so far
    first: int = 0                        # this round's first attempt in `attempts`
    rounds_done: int = 0                  # rounds tried again so far
    remaining_s: float = 0.0              # until the request's deadline
    now: float = 0.0                      # wall time, for the budget
    budget: RetryBudget | None = None     # the router's retry budget


def worth_another_round(end: RoundEnd, backoff: Backoff) -> bool:
    """Every provider failed, each attempt of this round in a way that may
    pass (a cancelled hedge says nothing), and rounds are left."""
    if end.error_kind is not ErrorKind.ALL_PROVIDERS_FAILED or end.in_outbox or end.draining \
            or end.rounds_done >= backoff.rounds:
        return False
    tried = [a.error_kind for a in end.attempts[end.first:] if a.error_kind is not ErrorKind.CANCELLED]
    return bool(tried) and all(kind in PASSING_KINDS for kind in tried)


def round_pause_s(rounds_done: int, backoff: Backoff, rng: random.Random) -> float:
    """Full jitter: uniform up to base * 2^rounds, capped."""
    ceiling = min(backoff.max_ms, backoff.base_ms * 2 ** rounds_done) / 1000
    return rng.uniform(0, ceiling)


def next_round(end: RoundEnd, backoff: Backoff, rng: random.Random) -> float | None:
    """The pause before the request is tried again, or None: it ends here.
    A round whose pause would not end before the deadline is not tried,
    nor one the retry budget has no room for (it withdraws when it has)."""
    if not worth_another_round(end, backoff):
        return None
    pause = round_pause_s(end.rounds_done, backoff, rng)
    if pause >= end.remaining_s - MIN_ATTEMPT_S:
        return None
    if end.budget is not None and not end.budget.try_withdraw(end.now):
        return None
    return pause
