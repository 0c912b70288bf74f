"""When a request no provider could take may be sent again: hand-built candidates, no clock."""

from __future__ import annotations

import pytest

from actors.policy.health import Health, HealthSnapshot
from actors.policy.ranking import Candidate
from actors.policy.retry_after import RetryHint, retry_hint

NOW = 1000.0


def cand(name: str, *, throttled_for: float | None = None, cooling_for: float | None = None,
         unreachable_for: float | None = None, rate_wait_s: float = 0.0, last_resort: bool = False) -> Candidate:
    health = HealthSnapshot(
        state=Health.UNHEALTHY if cooling_for else Health.HEALTHY,
        throttled_until=NOW + throttled_for if throttled_for else None,
        cooldown_until=NOW + cooling_for if cooling_for else None)
    return Candidate(name=name, index=0, health=health, rate_wait_s=rate_wait_s, last_resort=last_resort,
                     unreachable_until=NOW + unreachable_for if unreachable_for else None)


@pytest.mark.parametrize("candidates, expected", [
    ([cand("a", throttled_for=30), cand("b", rate_wait_s=0.5)], RetryHint(throttled=True, after_s=0.5)),
    ([cand("a", throttled_for=30), cand("b", cooling_for=10)], RetryHint(throttled=False, after_s=10)),
    ([cand("a", unreachable_for=1), cand("b", throttled_for=5)], RetryHint(throttled=False, after_s=1)),
    ([cand("a", throttled_for=30), cand("b")], RetryHint(throttled=False, after_s=None)),   # b is free now
    ([cand("a", throttled_for=3), cand("o", last_resort=True)], RetryHint(throttled=True, after_s=3)),
    ([], RetryHint(throttled=False, after_s=None)),
])
def test_retry_hint(candidates: list[Candidate], expected: RetryHint) -> None:
    assert retry_hint(candidates, NOW) == expected
