"""The actor directory (actors/ops/directory.py): handles kept, lookups off
the loop and bounded, the GCS's outage noticed once and its end by itself.
A stand-in Ray whose lookups block while the "GCS" is down; no cluster."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from actors.errors import GcsUnavailable, NotDeployed
from actors.ops.directory import ActorDirectory


class OutageRay:
    def __init__(self, names: dict[str, Any]):
        self.names = names
        self.up = threading.Event()
        self.up.set()
        self.lookups = 0

    def get_actor(self, name: str, namespace: str) -> Any:
        self.lookups += 1
        self.up.wait(30)
        if name not in self.names:
            raise ValueError(name)
        return self.names[name]

    def nodes(self) -> list[dict[str, Any]]:
        self.up.wait(30)
        return [{"NodeID": "h", "Alive": True, "Resources": {"node:__internal_head__": 1.0}},
                {"NodeID": "w", "Alive": True, "Resources": {"CPU": 1.0}}]


def test_a_kept_handle_needs_no_gcs_and_a_new_name_fails_typed_once_then_at_once() -> None:
    ray = OutageRay({"a": "A", "b": "B"})
    directory = ActorDirectory("ns", ray_api=ray, wait_s=0.2)
    assert directory.actor("a") == "A"
    ray.up.clear()                       # the head dies
    assert directory.actor("a") == "A"   # kept: no lookup
    started = time.monotonic()
    with pytest.raises(GcsUnavailable):
        directory.actor("b")
    assert directory.down_since is not None
    with pytest.raises(GcsUnavailable):
        directory.actor("b")             # known down: no second wait, no second lookup
    assert time.monotonic() - started < 10 and ray.lookups == 2
    ray.up.set()                         # the head is back: the lookup in flight completes
    deadline = time.monotonic() + 10
    while True:
        try:
            assert directory.actor("b") == "B"
            break
        except GcsUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert directory.down_since is None


def test_a_lookup_that_completes_after_its_caller_gave_up_is_kept_and_ends_the_outage() -> None:
    # A GCS slow once (a loaded machine), not down: the late answer must count, or every later
    # lookup, waiting 0 s while the GCS is taken to be down, gives up at once.
    ray = OutageRay({"a": "A", "b": "B"})
    directory = ActorDirectory("ns", ray_api=ray, wait_s=1.0)
    ray.up.clear()
    with pytest.raises(GcsUnavailable):
        directory.actor("a")
    ray.up.set()                         # the slow lookup answers after its caller gave up
    deadline = time.monotonic() + 10
    while directory.down_since is not None:
        assert time.monotonic() < deadline, "the late answer did not end the outage"
        time.sleep(0.01)
    assert directory.actor("a") == "A" and ray.lookups == 1    # kept: not looked up again
    assert directory.actor("b") == "B"                         # a new name waits as usual again


def test_an_unknown_name_is_not_deployed_and_forget_looks_up_again() -> None:
    ray = OutageRay({"a": "A"})
    directory = ActorDirectory("ns", ray_api=ray)
    with pytest.raises(NotDeployed):
        directory.actor("zz")
    directory.actor("a")
    directory.forget("a")
    directory.actor("a")
    assert ray.lookups == 3


def test_the_async_lookup_and_the_gcs_probe_do_not_hold_the_loop() -> None:
    ray = OutageRay({"a": "A"})
    directory = ActorDirectory("ns", ray_api=ray, wait_s=0.2)

    async def scenario() -> None:
        assert await directory.gcs_answers() is True
        assert [n.node_id for n in directory.last_nodes if n.is_head] == ["h"]
        ray.up.clear()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            for _ in range(5):
                await asyncio.sleep(0.01)
                ticks += 1

        results = await asyncio.gather(directory.gcs_answers(), directory.actor_async("a"), tick(),
                                       return_exceptions=True)
        assert results[0] is False and isinstance(results[1], GcsUnavailable) and ticks == 5
        assert [n.node_id for n in directory.last_nodes] == ["h", "w"]  # the last answer is kept
        ray.up.set()
        assert await directory.actor_async("a", 5) == "A"
        assert await directory.gcs_answers(5) is True and directory.down_since is None

    asyncio.run(scenario())
