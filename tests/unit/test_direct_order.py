"""What a router publishes for clients that send reads straight to providers
(RouterCore.direct_order): in-process providers, a fake clock."""

from __future__ import annotations

from actors.errors import RateLimited, TransientError
from tests.unit.harness import Harness


def test_healthy_providers_in_ranked_order_without_the_last_resort() -> None:
    h = Harness({"a": [], "b": [], "outbox": []})
    assert h.router.direct_order() == ["a", "b"]


def test_throttled_and_rate_limited_providers_are_left_to_the_router() -> None:
    h = Harness({"a": [RateLimited("429", retry_after_s=30)], "b": [], "c": []},
                provider_policy={"c": {"provider": {"rate_limit_per_s": 5}}})
    h.invoke()                     # a answers 429: throttled for 30 s; b serves
    assert h.router.direct_order() == ["b"]
    h.clock.now += 31
    assert h.router.direct_order() == ["b", "a"]


def test_a_provider_cooling_down_is_left_to_the_router() -> None:
    h = Harness({"a": [TransientError("x")] * 3, "b": []}, max_attempts=1)
    for _ in range(3):
        h.invoke()                 # a fails three times: unhealthy, cooling down
    assert h.router.direct_order() == ["b"]
