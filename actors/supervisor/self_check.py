"""Running a full self-check: gathering the evidence, then building the
report from it (findings.py).

Each provider is probed twice over: through its actor (which folds the
result into health, as live traffic does, so a passing probe lets a
cooled-down provider back in) and, with `supervisor.probe_all_nodes`, from
a task pinned to every alive node (actors/ops/reach.py), which tells "the
provider is down" from "node B cannot reach it". Beside the probes: what
routers (and providers with health hooks) say of their hooks and audit
log, the store's health, whether every node sees the same store, and
whether the cluster survives its head node (actors/ops/gcs.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from actors.clock import Clock
from actors.durable import StoreHealth
from actors.errors import ErrorKind
from actors.messages import ProbeResult, ProviderStatus, SelfCheckReport
from actors.ops.gcs import GcsFacts, gather_facts
from actors.ops.reach import NodeProbes, Reachability, alive_nodes, probe_from_every_node, probe_targets
from actors.ops.shared_store import SharedStoreReport, check_shared_store
from actors.specs import GatewaySpec, ProviderSpec
from actors.supervisor.findings import build_self_check
from actors.supervisor.gauges import SupervisorGauges
from actors.supervisor.status import Lookup, StatusBoard

__all__ = ["NodeEvidence", "RayNodeEvidence", "SelfCheck"]

log = logging.getLogger("aicmo.supervisor")

# How long an actor may take to answer what is not a probe (its status, its node, its ops report).
ANSWER_TIMEOUT_S = 5
# A probe's answer may come this much after the probe's own timeout (the call to the actor).
PROBE_SLACK_S = 2

Probed = tuple[ProbeResult, ProviderStatus | None, str | None]


class NodeEvidence(Protocol):
    """What tasks pinned to each node find: the providers as each node
    reaches them, and whether every node sees the same state store."""

    async def probe_from_every_node(self, providers: Sequence[ProviderSpec], probe_timeout_s: float,
                                    task_timeout_s: float) -> list[NodeProbes]: ...

    async def shared_store(self, spec: GatewaySpec, timeout_s: float) -> SharedStoreReport: ...

    async def gcs(self, spec: GatewaySpec, timeout_s: float) -> GcsFacts: ...


class RayNodeEvidence:
    """The tasks of actors/ops/reach.py and actors/ops/shared_store.py, on the alive nodes."""

    async def probe_from_every_node(self, providers: Sequence[ProviderSpec], probe_timeout_s: float,
                                    task_timeout_s: float) -> list[NodeProbes]:
        import ray

        nodes = await asyncio.to_thread(alive_nodes)
        return await probe_from_every_node(providers, probe_timeout_s, task_timeout_s, nodes,
                                           here=ray.get_runtime_context().get_node_id())

    async def shared_store(self, spec: GatewaySpec, timeout_s: float) -> SharedStoreReport:
        return await check_shared_store(spec, timeout_s=timeout_s)

    async def gcs(self, spec: GatewaySpec, timeout_s: float) -> GcsFacts:
        import ray

        # The supervisor opens the state store on its own node: this one.
        here = ray.get_runtime_context().get_node_id()
        return await gather_facts(spec.state.display, supervisor_node=here, timeout_s=timeout_s)


async def _nothing(value: Any) -> Any:
    return value


class SelfCheck:
    def __init__(self, spec: GatewaySpec, actor: Lookup, status: StatusBoard,
                 store_health: Callable[[], Awaitable[StoreHealth]], gauges: SupervisorGauges, clock: Clock, *,
                 nodes: NodeEvidence | None = None, gcs_answers: Callable[[], Awaitable[bool]] | None = None):
        self._spec = spec
        self._actor = actor
        self._status = status
        self._store_health = store_health
        self._gauges = gauges
        self._clock = clock
        self._nodes = nodes or RayNodeEvidence()
        # Tasks on every node need the GCS (new worker processes register with it): skipped while it is down.
        self._gcs_answers = gcs_answers
        self.last: SelfCheckReport | None = None
        self.reach: Reachability | None = None   # the matrix of the last check that built one

    async def run(self) -> SelfCheckReport:
        providers = [p for c in self._spec.capabilities for p in c.providers]
        nodes_too = self._gcs_answers is None or await self._gcs_answers()
        results, node_probes, ops, store, shared, gcs = await asyncio.gather(
            asyncio.gather(*(self._probe(p) for p in providers)), self._from_nodes(providers) if nodes_too
            else _nothing([]), self._ops_reports(), self._store_health(),
            self._shared_store() if nodes_too else _nothing(None), self._gcs() if nodes_too else _nothing(None))
        probes = {(r.capability, r.provider): r for r, _, _ in results}
        statuses = {(s.capability, s.name): s for _, s, _ in results if s is not None}
        now = self._clock.time()
        self._status.found(statuses.values(), now)
        if node_probes:
            self.reach = Reachability(generated_at=now, nodes=node_probes, actor_nodes={
                f"{r.capability}/{r.provider}": node for r, _, node in results if node})
        self.last = build_self_check(self._spec, probes, statuses, now, reach=self.reach if node_probes else None,
                                     trends=self._status.trends(), ops=ops, store=store, shared=shared,
                                     gcs=gcs)
        await self._gauges.record_check(self.last, self.reach)
        return self.last

    async def _probe(self, p: ProviderSpec) -> Probed:
        sup = self._spec.supervisor
        timeout_s = sup.probe_timeout_s
        try:
            handle = self._actor(p.actor_name)
            result = await asyncio.wait_for(handle.probe.remote(timeout_s), timeout_s + PROBE_SLACK_S)
            status = await asyncio.wait_for(handle.status.remote(), ANSWER_TIMEOUT_S)
            node = await asyncio.wait_for(handle.node_id.remote(), ANSWER_TIMEOUT_S) if sup.probe_all_nodes else None
            return result, status, node
        except Exception as exc:  # noqa: BLE001
            return ProbeResult(provider=p.name, capability=p.capability, ok=False, error_kind=ErrorKind.UNAVAILABLE,
                               error=f"provider actor did not answer: {type(exc).__name__}", delivers=p.delivers), None, None

    async def _from_nodes(self, providers: list[ProviderSpec]) -> Any:
        sup = self._spec.supervisor
        if not sup.probe_all_nodes or not probe_targets(providers):
            return []
        try:
            return await self._nodes.probe_from_every_node(providers, sup.probe_timeout_s, sup.node_probe_timeout_s)
        except Exception:  # noqa: BLE001 - the matrix is extra evidence; the check goes on without it
            log.exception("probing from every node failed")
            return []

    async def _shared_store(self) -> SharedStoreReport | None:
        try:
            return await self._nodes.shared_store(self._spec, self._spec.supervisor.node_probe_timeout_s)
        except Exception:  # noqa: BLE001 - extra evidence; the check goes on without it
            log.exception("checking that every node shares the state store failed")
            return None

    async def _gcs(self) -> GcsFacts | None:
        try:
            return await self._nodes.gcs(self._spec, self._spec.supervisor.node_probe_timeout_s)
        except Exception:  # noqa: BLE001 - extra evidence; the check goes on without it
            log.exception("reading whether the cluster's GCS is fault tolerant failed")
            return None

    async def _ops_reports(self) -> list[tuple[str, str, dict[str, Any]]]:
        """What routers (and providers with health hooks) say of their hooks and audit log."""
        actors = [(c.capability, c.actor_name) for c in self._spec.capabilities]
        actors += [(p.capability, p.actor_name) for c in self._spec.capabilities for p in c.providers
                   if p.hooks.on_health_change]

        async def one(capability: str, name: str) -> tuple[str, str, dict[str, Any]] | None:
            try:
                return capability, name, await asyncio.wait_for(self._actor(name).ops_report.remote(),
                                                                ANSWER_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - an actor that does not answer is reported elsewhere
                return None

        found = await asyncio.gather(*(one(c, n) for c, n in actors))
        return [f for f in found if f is not None]
