"""A router replica's view of its siblings (policy.routing.replicas).

Replicas of a capability share nothing in memory: keys are claimed in the
store (idempotency.py), spend and quotas are the providers', the outbox is
drained through replica 0 alone (the supervisor asks it by the contract's
name). What replica 0 does for the others here:

- relays the pushes its providers send to `router:<capability>` (health,
  quota flips) to its siblings, fire and forget, so every replica plans with
  what the providers know (a replica that misses one learns it from its next
  reply from that provider);
- gathers the replicas' status (`status` shows each: node, alive, in flight).

Each replica counts its requests in flight (`serving`): what `status` shows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

from actors.messages import ReplicaStatus
from actors.names import router_replica_name

__all__ = ["Replicas", "router_is_dead"]

log = logging.getLogger("aicmo.router")


class Replicas:
    def __init__(self, capability: str, namespace: str, index: int, count: int):
        self.capability = capability
        self.namespace = namespace
        self.index = index
        self.count = count
        self.in_flight = 0
        self.served = 0          # requests taken since it started
        self._handles: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return router_replica_name(self.capability, self.index)

    @contextmanager
    def serving(self, requests: int) -> Iterator[None]:
        self.in_flight += requests
        self.served += requests
        try:
            yield
        finally:
            self.in_flight -= requests

    def status(self, node_id: str | None) -> ReplicaStatus:
        return ReplicaStatus(index=self.index, name=self.name, node_id=node_id, in_flight=self.in_flight,
                             served=self.served)

    def _sibling(self, index: int) -> Any:
        handle = self._handles.get(index)
        if handle is None:
            handle = self._handles[index] = ray.get_actor(router_replica_name(self.capability, index),
                                                          namespace=self.namespace)
        return handle

    def _siblings(self) -> range:
        return range(1, self.count) if self.index == 0 else range(0)

    def relay(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Replica 0 passes a provider's push on to the other replicas."""
        for index in self._siblings():
            try:
                getattr(self._sibling(index), method).remote(*args, **kwargs)
            except Exception:  # noqa: BLE001 - not created yet, or restarting: its replies tell it
                self._handles.pop(index, None)

    async def statuses(self, own: ReplicaStatus, timeout_s: float) -> list[ReplicaStatus]:
        """Every replica's status (replica 0 asks the others); one that does not answer is shown not alive."""
        async def one(index: int) -> ReplicaStatus:
            name = router_replica_name(self.capability, index)
            try:
                return await asyncio.wait_for(self._sibling(index).replica_status.remote(), timeout_s)
            except Exception as exc:  # noqa: BLE001 - a dead replica is a status, not an error
                self._handles.pop(index, None)
                return ReplicaStatus(index=index, name=name, alive=False, error=type(exc).__name__)

        return [own, *await asyncio.gather(*(one(i) for i in self._siblings()))]


# Ray's GCS says of an actor whose process is gone: restarting it, or dead for good.
_GONE_STATES = frozenset({"RESTARTING", "DEAD"})


async def router_is_dead(owner: str) -> bool:
    """Whether the router that claimed a key (owner "<actor id>:<process>") is
    dead, by Ray's GCS (one lookup, off the event loop). A restarted router
    is ALIVE again and ends its predecessor's claims itself (`ready`)."""
    from ray._private import state  # the actor table: no public API reads one actor's state from the GCS

    info = await asyncio.to_thread(state.actors, owner.split(":", 1)[0])
    return info.get("State") in _GONE_STATES
