"""The supervisor actor, a thin Ray shell over its collaborators:

- status.py: the registry, the status providers push, samples and trends;
- self_check.py: a full self-check's evidence, built into a report by findings.py;
- outbox.py: draining the outbox, and what operators do to it;
- state.py: the state store (opened on first use), its health, pruning, audit hashes;
- gauges.py: the supervisor's metrics;
- jobs.py: the periodic jobs (checks with jitter, draining, sampling, gauges, pruning);
- chaos_control.py: live faults set from the CLI.

Each takes what it needs in its constructor: the spec, the clock, and
`actor(name)`, the lookup of another actor of the gateway by name; only
this module talks to Ray.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import ray

from actors.clock import SYSTEM_CLOCK, Clock
from actors.durable import OutboxItem, StoreHealth
from actors.messages import ProviderStatus, SelfCheckReport, StatusReport
from actors.names import SUPERVISOR_NAME
from actors.ops.directory import ActorDirectory
from actors.ops.exposure import exposures
from actors.ops.metrics import HeldGauges, RayRecorder
from actors.ops.reach import Reachability
from actors.ops.recommend import ProviderTrend
from actors.policy.chaos.faults import Fault, FaultCleared, FaultInjected
from actors.specs import GatewaySpec
from actors.supervisor import chaos_control
from actors.supervisor.findings import build_self_check
from actors.supervisor.gauges import SupervisorGauges
from actors.supervisor.jobs import Job, PeriodicJobs
from actors.supervisor.outbox import OutboxDesk, outbox_capabilities
from actors.supervisor.self_check import SelfCheck
from actors.supervisor.state import SupervisorState
from actors.supervisor.status import StatusBoard
from actors.supervisor.whereabouts import Whereabouts

__all__ = ["SupervisorActor", "build_self_check"]

log = logging.getLogger("aicmo.supervisor")

# Parked requests are asked about again on every this many drain rounds.
SETTLE_PARKED_EVERY = 10


def _start_loops_after_init() -> None:
    """Have this actor call its own `ready` once `__init__` returns: its loops
    (checks, draining, sampling) start on their own, also when Ray restarts
    it after a crash and nobody calls it."""
    try:
        ray.get_runtime_context().current_actor.ready.remote()
    except Exception:  # noqa: BLE001 - outside an actor: the first call starts them
        log.debug("could not schedule the first ready()", exc_info=True)


@ray.remote
class SupervisorActor:
    def __init__(self, spec: GatewaySpec, clock: Clock = SYSTEM_CLOCK):
        self._spec = spec
        # Handles kept, lookups off the loop: the supervisor serves on through the head's outage.
        self._directory = ActorDirectory(spec.namespace, clock=clock, owner="supervisor")
        self._state = SupervisorState(spec.state, clock)
        self._status = StatusBoard(spec, self._actor, clock)
        self._outbox = OutboxDesk(spec, self._state.store, self._actor, clock)
        self._gauges = SupervisorGauges(
            HeldGauges(RayRecorder(spec.metrics.latency_buckets_ms)) if spec.metrics.enabled else None,
            outbox_capabilities(spec), lambda: self._state.store().outbox_counts())
        self._where = Whereabouts(spec, self._actor, lambda: ray.get_runtime_context().get_node_id(),
                                  self._directory.gcs_answers, lambda: self._directory.last_nodes)
        self._check = SelfCheck(spec, self._actor, self._status, self._state.health, self._gauges, clock,
                                gcs_answers=self._directory.gcs_answers)
        self._jobs = PeriodicJobs(clock, random.Random())
        self._clock = clock
        self._drain_rounds = 0
        _start_loops_after_init()

    def _actor(self, name: str) -> Any:
        return self._directory.actor(name)

    def _ensure_loop(self) -> None:
        # Started from the first call rather than __init__, so they also start
        # again after Ray restarts this actor.
        if self._jobs.started:
            return
        s, metrics = self._spec.supervisor, self._spec.metrics
        self._jobs.start([
            Job(s.check_interval_s, self.run_full_check, "periodic self-check", jitter_s=s.check_jitter_s),
            Job(s.drain_interval_s, self._drain_round, "outbox drain"),
            Job(s.sample_interval_s, self.sample, "status sampling"),
            Job(metrics.flush_interval_s if metrics.enabled else 0, self._gauges.refresh, "refreshing gauges"),
            Job(self._spec.state.prune_interval_s, self.prune, "pruning the state store"),
        ])

    def _drain_round(self) -> Any:
        self._drain_rounds += 1
        return self.drain_once(settle_parked=self._drain_rounds % SETTLE_PARKED_EVERY == 0)

    # --- lifecycle and registry ------------------------------------------------------
    def __repr__(self) -> str:
        """Its gateway name: Ray shows it in the dashboard's actor list, in the
        state API (`repr_name`) and as its log lines' prefix."""
        return SUPERVISOR_NAME

    async def ready(self) -> str:
        self._ensure_loop()
        return SUPERVISOR_NAME

    def node_id(self) -> str:
        """The Ray node this actor (and the state store it opens) runs on: `up` and `status` say which, and
        whether it is the head; `doctor` tells the head from a worker."""
        return ray.get_runtime_context().get_node_id()

    def digest(self) -> str:
        return self._spec.digest

    def spec(self) -> GatewaySpec:
        # Any client of the cluster may ask: the spec goes out without secrets.
        return self._spec.without_secrets()

    def registry(self) -> dict[str, Any]:
        return self._status.registry()

    # --- status ------------------------------------------------------------------------
    async def report(self, status: ProviderStatus) -> None:
        self._ensure_loop()
        self._status.push(status)

    def pushed_reports(self) -> list[ProviderStatus]:
        return self._status.pushed()

    async def status_report(self, timeout_s: float = 10.0) -> StatusReport:
        self._ensure_loop()
        caps, store, (actors, nodes) = await asyncio.gather(
            self._status.capabilities(timeout_s), self._state.health(), self._where.report())
        return StatusReport(namespace=self._spec.namespace, generated_at=self._clock.time(), capabilities=caps,
                            store=store, actors=actors, cluster_nodes=nodes,
                            exposures=[f"{f.problem} ({f.subject})" for f in exposures(self._spec)])

    async def sample(self) -> int:
        """Ask every provider actor for its status once: history for trends,
        and the outbox depth for metrics. Returns how many answered."""
        answered = await self._status.sample()
        await self._gauges.record_outbox()
        return answered

    def trends(self) -> dict[str, dict[str, ProviderTrend]]:
        return self._status.trends()

    # --- self-checks ----------------------------------------------------------------------
    async def run_full_check(self) -> SelfCheckReport:
        self._ensure_loop()
        return await self._check.run()

    def reachability(self) -> Reachability | None:
        """The matrix of the last full check: each probed provider from each node."""
        return self._check.reach

    def last_check(self) -> SelfCheckReport | None:
        return self._check.last

    # --- the state store ----------------------------------------------------------------
    async def store_health(self) -> StoreHealth:
        return await self._state.health()

    async def audit_hashes(self, idempotency_key: str | None = None, address: str | None = None) -> dict[str, Any]:
        return await self._state.audit_hashes(idempotency_key, address)

    async def prune(self) -> dict[str, int]:
        return await self._state.prune()

    # --- delivery events (actors/events) ----------------------------------------------------
    async def delivery_trace(self, ident: str) -> Any:
        """A request's timeline by idempotency key or request id (None: unknown)."""
        from actors.ops.trace import load_trace

        return await load_trace(self._state.store(), [c.capability for c in self._spec.capabilities], ident)

    async def suppression_list(self, capability: str | None = None) -> list[Any]:
        return await self._state.store().suppress_list(capability)

    async def suppression_remove(self, address: str, capability: str | None = None) -> int:
        return await self._state.store().suppress_remove(address, capability)

    # --- the outbox ------------------------------------------------------------------------
    async def drain_once(self, settle_parked: bool = True) -> list[dict[str, Any]]:
        return await self._outbox.drain_once(settle_parked)

    async def outbox_list(self, capability: str | None = None, include_done: bool = False,
                          limit: int = 1000) -> list[OutboxItem]:
        return await self._outbox.list(capability, include_done, limit)

    async def outbox_drop(self, item_id: int) -> OutboxItem | None:
        return await self._outbox.drop(item_id)

    async def outbox_replay(self, ids: list[int] | None = None, force: bool = False) -> list[dict[str, Any]]:
        return await self._outbox.replay(ids, force)

    # --- live faults (chaos_control.py) -----------------------------------------------------
    async def chaos_inject(self, fault: Fault) -> FaultInjected:
        return await chaos_control.inject(self._spec, fault, self._actor, self._clock.time())

    async def chaos_clear(self, by: str, capability: str | None = None, provider: str | None = None) -> list[FaultCleared]:
        return await chaos_control.clear(self._spec, self._clock.time(), by, self._actor, capability, provider)

    async def chaos_list(self) -> list[Fault]:
        return await chaos_control.faults(self._spec, self._actor)
