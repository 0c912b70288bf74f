"""Whether a request every provider failed is tried again, and after how
long (policy/rounds.py), on hand-built snapshots: no router, no clock, the
randomness passed in."""

from __future__ import annotations

import random

import pytest

from actors.errors import ErrorKind
from actors.messages import Attempt
from actors.policy.budget import RetryBudget
from actors.policy.rounds import PASSING_KINDS, Backoff, RoundEnd, next_round, round_pause_s, worth_another_round

NOW = 1000.0
BACKOFF = Backoff(rounds=5, base_ms=50, max_ms=1000)


def failed(*kinds: ErrorKind) -> list[Attempt]:
    return [Attempt(provider=f"p{i}", ok=False, error_kind=k) for i, k in enumerate(kinds)]


def end(*kinds: ErrorKind, **fields) -> RoundEnd:
    base = dict(error_kind=ErrorKind.ALL_PROVIDERS_FAILED, attempts=failed(*kinds), remaining_s=10.0, now=NOW)
    return RoundEnd(**{**base, **fields})


class Top(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def test_every_provider_failing_in_a_way_that_may_pass_is_worth_another_round() -> None:
    assert worth_another_round(end(ErrorKind.TRANSIENT, ErrorKind.TIMEOUT), BACKOFF)
    assert worth_another_round(end(ErrorKind.CRASHED, ErrorKind.CANCELLED), BACKOFF)   # a lost hedge says nothing


@pytest.mark.parametrize("snapshot", [
    end(ErrorKind.TRANSIENT, ErrorKind.AUTH),                                  # one will not pass
    end(ErrorKind.RATE_LIMITED),                                               # a throttle: waited for, not retried
    end(ErrorKind.CANCELLED),                                                  # nothing was really tried
    end(),
    end(ErrorKind.TRANSIENT, error_kind=None),                                 # it succeeded
    end(ErrorKind.TRANSIENT, error_kind=ErrorKind.DEADLINE_EXCEEDED),
    end(ErrorKind.TRANSIENT, in_outbox=True),                                  # the queue is its retry
    end(ErrorKind.TRANSIENT, draining=True),                                   # an outbox item being delivered
    end(ErrorKind.TRANSIENT, rounds_done=5),                                   # routing.retry_rounds spent
], ids=["auth", "throttle", "cancelled", "none", "ok", "deadline", "queued", "draining", "rounds"])
def test_no_round_otherwise(snapshot: RoundEnd) -> None:
    assert not worth_another_round(snapshot, BACKOFF)
    assert next_round(snapshot, BACKOFF, Top()) is None


def test_only_this_rounds_attempts_count() -> None:
    attempts = [*failed(ErrorKind.AUTH), *failed(ErrorKind.TRANSIENT)]
    assert not worth_another_round(end(attempts=attempts), BACKOFF)
    assert worth_another_round(end(attempts=attempts, first=1), BACKOFF)


def test_the_pause_is_full_jitter_doubling_to_a_cap() -> None:
    assert [round_pause_s(n, BACKOFF, Top()) for n in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    rng = random.Random(7)
    pauses = [round_pause_s(2, BACKOFF, rng) for _ in range(200)]
    assert all(0 <= p <= 0.2 for p in pauses) and max(pauses) > 0.1


def test_a_pause_past_the_deadline_is_no_round_and_draws_nothing() -> None:
    budget = RetryBudget(percent=0, min_per_s=0.1, ttl_s=10)    # one in the window
    assert next_round(end(ErrorKind.TRANSIENT, remaining_s=0.04, budget=budget), BACKOFF, Top()) is None
    assert budget.balance(NOW) == pytest.approx(1.0)
    assert next_round(end(ErrorKind.TRANSIENT, remaining_s=10, budget=budget), BACKOFF, Top()) == 0.05
    assert next_round(end(ErrorKind.TRANSIENT, remaining_s=10, budget=budget), BACKOFF, Top()) is None   # spent


def test_the_passing_kinds() -> None:
    assert PASSING_KINDS == {ErrorKind.TRANSIENT, ErrorKind.TIMEOUT, ErrorKind.UNAVAILABLE, ErrorKind.CRASHED,
                             ErrorKind.MALFORMED_RESPONSE}
