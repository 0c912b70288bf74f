"""The provider actor: a thin Ray shell around ProviderCore (core.py).

It builds the core with its listeners: the operations side (metrics, hooks
on health changes: actors/ops/observers.py) and its peers (peers.py), which
push health and quota changes to its router and the supervisor off the
request's path. It tells its router when Ray restarted it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import ray

from actors.clock import SYSTEM_CLOCK
from actors.durable import StoreHealth
from actors.messages import CallContext, CallReply, ProbeResult, ProviderStatus, Resolution
from actors.payloads import Payload
from actors.policy.chaos.faults import Fault, check_held
from actors.policy.health import HealthSnapshot
from actors.provider.core import ProviderCore
from actors.provider.peers import Peers
from actors.specs import ProviderSpec, router_name
from actors.telemetry import tracing_for

log = logging.getLogger("aicmo.provider")


def _reconstructed() -> bool:
    """Whether Ray restarted this actor (the property reads a deprecated
    one of its own on the way: its warning would go to every worker's log)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


@ray.remote
class ProviderActor:
    def __init__(self, spec: ProviderSpec, namespace: str):
        from actors.ops.observers import ProviderOps

        # The listeners hear the core from its first call: ops (metrics, hooks), then the peers (router, supervisor).
        self._ops = ProviderOps(spec, lambda: self._core.status(), clock=SYSTEM_CLOCK)
        self._peers = Peers(namespace, lambda: self._core.health)
        self._core = ProviderCore(spec, clock=SYSTEM_CLOCK, listeners=[self._ops, self._peers],
                                  tracing=tracing_for(spec.traces, spec.actor_name))
        self._announced = False
        try:  # start the ops loop (gauges, audit flushes) without waiting for traffic, also after a restart
            ray.get_runtime_context().current_actor.ready.remote()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self) -> str:
        """Its gateway name: Ray shows it in the dashboard's actor list, in the
        state API (`repr_name`) and as its log lines' prefix."""
        return self._core.spec.actor_name  # provider:<capability>:<name>

    async def call(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        return await self._core.call(method, payload, ctx)

    async def call_many(self, calls: list[tuple[str, Payload, CallContext]]) -> list[CallReply]:
        """A router's batch (actors/router/coalesce.py): its keyed sends checked
        and journaled together, all run concurrently, answered in order."""
        return await self._core.call_many(calls)

    async def resolve(self, method: str, payload: Payload, ctx: CallContext) -> Resolution:
        return await self._core.resolve(method, payload, ctx)

    async def probe(self, timeout_s: float = 5.0) -> ProbeResult:
        return await self._core.probe(timeout_s)

    def status(self) -> ProviderStatus:
        return self._core.status()

    def health(self) -> HealthSnapshot:
        return self._core.health

    def node_id(self) -> str:
        """The Ray node this actor runs on (`up` and `status` say which, and whether it is the head),
        where its traffic to the provider goes from."""
        return ray.get_runtime_context().get_node_id()

    def digest(self) -> str:
        return self._core.spec.digest

    def store_health(self) -> StoreHealth:
        """The state store as this provider has seen it; `unjournaled` is how
        many outcomes wait to be written because it did not answer."""
        return msgspec.structs.replace(self._core.store().health(), unjournaled=self._core.outcomes.backlog)

    async def ready(self) -> str:
        self._ops.ensure_started()
        self._core.spending.start(eager=False)  # loads this period's spend from the store, then flushes every second
        if not self._announced:
            self._announced = True
            if _reconstructed():
                asyncio.ensure_future(self._back())
        return self._core.spec.actor_name

    async def _back(self) -> None:
        """Ray restarted this actor: its router tries it again now, not after
        its unreachable back-off, and hands back the health it had."""
        spec = self._core.spec
        try:
            health = await self._peers.peer(router_name(spec.capability)).provider_back.remote(spec.name)
        except Exception:  # noqa: BLE001 - the router not there yet: it learns from the first reply
            log.warning("%s: could not tell the router it is back", spec.actor_name, exc_info=True)
            return
        if health is not None and self._core.resume(health):
            log.warning("%s: restarted; resuming from the health the router had (%s)", spec.actor_name,
                        health.state)

    async def ops_report(self) -> dict[str, Any]:
        """Its on_health_change hooks: calls, failures, load errors."""
        return self._ops.report()

    def set_fault(self, fault: Fault | None) -> Fault | None:
        """Sets the live fault (`chaos inject`, through the supervisor), or clears
        it with None; returns the active one it replaced. Memory only: a
        restarted actor has none. Checked here too (InvalidFault): any Ray
        driver in the namespace can call this method, not only the supervisor."""
        if fault is not None:
            check_held(fault, now=self._core.clock.time(), policy=self._core.spec.chaos,
                       capability=self._core.spec.capability, provider=self._core.spec.name)
        self._ops.ensure_started()  # its gauge follows on the ops round
        return self._core.faults.set(fault)

    def fault(self) -> Fault | None:
        """The live fault, while it lasts."""
        return self._core.faults.current()

    def inject_fault(self, **changes: Any) -> dict[str, Any]:
        """Change a simulated provider's behaviour at run time (demo and fault tests)."""
        reconfigure = getattr(self._core.adapter, "reconfigure", None)
        if reconfigure is None:
            raise TypeError(f"{self._core.spec.adapter} adapter takes no injected faults; only `simulated` does")
        return reconfigure(**changes).model_dump()
