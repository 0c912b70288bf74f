"""Two deliveries of the same outbox item at once, without Ray.

They happen whenever two drains of a capability overlap: Ray restarts a
supervisor killed mid-drain and its new loop drains while the router is
still working through the old call's batch; or an operator runs
`aicmo-gateway outbox replay` while the periodic drain runs. The router
does not serialize them, and the providers' journals only deduplicate a
key *per provider*: when the two deliveries plan differently (here the
first takes the half-open trial of a recovering provider, so the second
skips it), the request goes out through two providers.

The harness's providers are reached after a small delay, as over Ray (the
call is in flight before the provider has written `started`).
"""

from __future__ import annotations

import asyncio
from typing import Any


from actors.errors import TransientError
from tests.unit.fakes import sleeper
from tests.unit.harness import EMAIL, Harness

HOP_S = 0.01


class OverRay(Harness):
    """Provider calls spend HOP_S in flight, as they do between actors."""

    async def send(self, name: str, method: str, payload: Any, ctx: Any):
        await asyncio.sleep(HOP_S)
        return await super().send(name, method, payload, ctx)

    async def resolve(self, name: str, method: str, payload: Any, ctx: Any):
        await asyncio.sleep(HOP_S)
        return await super().resolve(name, method, payload, ctx)


def queued_while_a_was_down() -> OverRay:
    """Three sends queued while `a` failed (now UNHEALTHY, its cooldown over: the
    next request gives it a trial); `b` never tried."""
    h = OverRay({"a": [TransientError("down")] * 3 + [sleeper(0.05)] * 6, "b": [sleeper(0.05)] * 6, "outbox": []},
                max_attempts=1)
    for i in range(3):
        assert h.invoke({**EMAIL, "subject": f"s{i}"}, idempotency_key=f"q{i}").provider == "outbox"
    h.clock.now += 60
    return h


def test_one_drain_at_a_time_delivers_each_item_once() -> None:
    h = queued_while_a_was_down()
    report = asyncio.run(h.router.drain_outbox(rate_per_s=1000))
    assert report["delivered"] == [1, 2, 3]
    # a: its three failures, then one delivery of each
    assert [ctx.idempotency_key for _, _, ctx in h.adapters["a"].calls] == ["q0", "q1", "q2"] * 2
    assert h.calls("b") == 0


def test_overlapping_drains_through_the_same_provider_deliver_each_item_once() -> None:
    h = queued_while_a_was_down()
    h.clock.now -= 60  # `a` still cooling down: both drains plan `b` alone

    async def both() -> list[Any]:
        return await asyncio.gather(h.router.drain_outbox(rate_per_s=1000), h.router.drain_outbox(rate_per_s=1000))

    asyncio.run(both())
    assert sorted(ctx.idempotency_key for _, _, ctx in h.adapters["b"].calls) == ["q0", "q1", "q2"]


def test_overlapping_drains_deliver_each_item_once() -> None:
    # Found by this suite: overlapping drains used to deliver an item twice
    # when their plans differed. Drains now run one at a time per router,
    # and each delivery holds its key as running, as `invoke` does.
    h = queued_while_a_was_down()

    async def overlapping() -> list[Any]:
        async def second() -> Any:
            await asyncio.sleep(HOP_S / 5)  # the first drain's call to `a` is in flight
            return await h.router.drain_outbox(rate_per_s=1000)

        return await asyncio.gather(h.router.drain_outbox(rate_per_s=1000), second())

    first, second = asyncio.run(overlapping())
    assert sorted(first["delivered"] + second["delivered"])[:3] == [1, 2, 3]
    sent = {name: [ctx.idempotency_key for _, _, ctx in h.adapters[name].calls] for name in ("a", "b")}
    deliveries = sent["a"][3:] + sent["b"]
    assert sorted(deliveries) == ["q0", "q1", "q2"], f"delivered: a {sent['a'][3:]}, b {sent['b']}"
