"""The router actor: one per capability, a thin Ray shell around RouterCore
(core.py). It reaches provider actors by name (provider_calls.py, where
Ray's failures become `ActorUnreachable`: never a crashed router), and
answers status.

It also hooks up operations (actors/ops): every finished request's Decision
goes to the audit log, the metrics and the on_success/on_failure hooks,
which only enqueue on the request's path."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import ray

from actors.durable import StoreHealth
from actors.errors import ActorUnreachable
from actors.messages import (
    CapabilityStatus,
    InvokeResult,
    Operation,
    ProviderStatus,
    Ranking,
    ReplicaStatus,
)
from actors.ops.observers import RouterOps
from actors.policy.admission import Overloaded
from actors.policy.chaos.faults import ChaosEvent
from actors.policy.health import Health, HealthSnapshot
from actors.router.admission import RouterAdmission, options_of
from actors.router.core import RouterCore
from actors.router.provider_calls import ACTOR_GRACE_S, ProviderCalls
from actors.router.replicas import Replicas, router_is_dead
from actors.router.start import RouterStart
from actors.specs import CapabilitySpec
from actors.telemetry import tracing_for


__all__ = ["ACTOR_GRACE_S", "RANKING_VALID_FOR_S", "ActorUnreachable", "RouterActor", "RouterCore"]

# How long a client may use a published ranking before it asks again.
RANKING_VALID_FOR_S = 1.0


@ray.remote
class RouterActor:
    def __init__(self, spec: CapabilitySpec, namespace: str, replica: int = 0, replicas: int = 1):
        """`replica` of `replicas` (actors/router/replicas.py): replica 0 holds
        the name of the contract, `router:<capability>`, and is the one the
        supervisor has drain the outbox and settle parked items (once, not
        once per replica) and that providers push their changes to."""
        self._replicas = Replicas(spec.capability, namespace, replica, replicas)
        self._actor_names = {p.name: p.actor_name for p in spec.providers}
        self._calls = ProviderCalls(self._actor_names, namespace)
        # Claims it leaves in the store carry its actor id: its next
        # incarnation (Ray restarts it under the same id) drops them first.
        self._core = RouterCore(spec, self._calls.send, self._calls.resolve, send_many=self._calls.send_many,
                                owner=ray.get_runtime_context().get_actor_id(), owner_gone=router_is_dead,
                                tracing=tracing_for(spec.traces, self._replicas.name))
        self._ops = RouterOps(spec, replica=replica)
        self._core.observers.append(self._ops.observe)
        self._start = RouterStart(self._core, self._ops, self._calls)   # what it loads and starts once up
        self._admission = RouterAdmission(spec.routing.admission, self._replicas.name)
        try:  # start the ops loop (gauges, audit flushes) without waiting for traffic, also after a restart
            ray.get_runtime_context().current_actor.ready.remote()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self) -> str:
        """Its gateway name: Ray shows it in the dashboard's actor list, in the
        state API (`repr_name`) and as its log lines' prefix."""
        return self._replicas.name  # router:<capability>, router:<capability>#<n> for replicas after the first

    async def invoke(self, method: str, payload: Any, idempotency_key: str | None = None,
                     dry_run: bool | None = None, deadline_s: float | None = None,
                     traceparent: str | None = None) -> InvokeResult:
        overloaded = await self._admission.arrived(self._replicas.in_flight)
        if overloaded is not None:
            return self._refused(overloaded, method, idempotency_key, dry_run)
        with self._replicas.serving(1):
            await self._start.quotas_known()
            return await self._core.invoke(method, payload, idempotency_key=idempotency_key, dry_run=dry_run,
                                           deadline_s=deadline_s, traceparent=traceparent)

    async def invoke_many(self, requests: list[Any]) -> list[InvokeResult]:
        overloaded = await self._admission.arrived(self._replicas.in_flight)
        if overloaded is not None:
            return [self._refused(overloaded, *options_of(item)) for item in requests]
        with self._replicas.serving(len(requests)):
            await self._start.quotas_known()
            return await self._core.invoke_many(requests)

    def _refused(self, why: Overloaded, method: Any, idempotency_key: str | None, dry_run: bool | None) -> InvokeResult:
        """Answered at once (actors/router/admission.py); observed, audited and counted as any request."""
        core = self._core
        return core.finish(core.clock.monotonic(),
                           self._admission.refusal(why, core.capability, method, idempotency_key, dry_run))

    async def drain_outbox(self, limit: int = 100, rate_per_s: float = 20.0, ids: list[int] | None = None) -> dict[str, Any]:
        return await self._core.drain_outbox(limit, rate_per_s, ids)

    async def settle_parked(self, ids: list[int] | None = None) -> dict[str, Any]:
        return await self._core.settle_parked(ids)

    async def replay_outbox(self, ids: list[int], force: bool = False) -> dict[str, Any]:
        return await self._core.replay_outbox(ids, force)

    def ranking(self) -> Ranking:
        """The providers a client may send idempotent calls to directly, now."""
        spec = self._core.spec
        return Ranking(capability=spec.capability, providers=self._core.direct_order(),
                       actor_names=dict(self._actor_names),
                       attempt_timeout_s={p.name: p.attempt_timeout_s for p in spec.providers},
                       dry_run=spec.dry_run, valid_for_s=RANKING_VALID_FOR_S)

    def real_provider_available(self) -> bool:
        return self._core.real_provider_available()

    def health_changed(self, name: str, health: HealthSnapshot, relayed: bool = False) -> None:
        """A provider's health changed (its push); replica 0 passes it on to its siblings."""
        self._core.health_changed(name, health)
        if not relayed:
            self._replicas.relay("health_changed", name, health, relayed=True)

    def quota_changed(self, status: ProviderStatus, relayed: bool = False) -> None:
        """A provider's quota or balance was spent, or is back (spending.py)."""
        self._core.seen.quotas.learn_status(status.name, status)
        if not relayed:
            self._replicas.relay("quota_changed", status, relayed=True)

    def provider_back(self, name: str) -> HealthSnapshot | None:
        """Called by a provider actor Ray restarted (see ProviderActor._back)."""
        return self._core.provider_back(name)

    async def status(self, timeout_s: float = 5.0) -> CapabilityStatus:
        async def one(name: str) -> ProviderStatus:
            spec = self._core.providers[name]
            try:
                status = await asyncio.wait_for(self._calls.handle(name).status.remote(), timeout_s)
                self._core.health_changed(name, self._health_of(status, self._core.views[name].health))
                self._core.seen.quotas.learn_status(name, status)
                self._core.outliers.probes(name, status.probe_samples)
                return status
            except Exception as exc:  # noqa: BLE001 - a dead actor is a status, not an error
                if isinstance(exc, ray.exceptions.ActorDiedError):
                    # Gone for good (replaced?): look it up again. A slow or restarting one keeps its
                    # handle: a new lookup needs the GCS, which may be down (the head's outage).
                    self._calls.forget(name)
                view = self._core.views[name]
                return ProviderStatus.from_health(view.health, name=name, capability=spec.capability, adapter=spec.adapter,
                                                  reachable=False, delivers=spec.delivers, last_resort=spec.last_resort,
                                                  warnings=[f"provider actor did not answer: {type(exc).__name__}"])

        statuses, replicas = await asyncio.gather(asyncio.gather(*(one(n) for n in self._actor_names)),
                                                  self._replicas.statuses(self.replica_status(), timeout_s))
        ranked = self._core.ranked({s.name: s for s in statuses})
        return msgspec.structs.replace(ranked, replicas=replicas)

    def replica_status(self) -> ReplicaStatus:
        """This replica: its name, node, requests in flight, and whether it is refusing requests (overloaded)."""
        return msgspec.structs.replace(self._replicas.status(ray.get_runtime_context().get_node_id()),
                                       overloaded=self._admission.overloaded(), refused=self._admission.refused)

    @staticmethod
    def _health_of(status: ProviderStatus, known: HealthSnapshot) -> HealthSnapshot:
        # THROTTLED is only shown, never stored: keep the state we knew.
        return status.health_snapshot(known.state if status.health is Health.THROTTLED else None)

    def store_health(self) -> StoreHealth:
        """The state store as this router has seen it (round trips included)."""
        return self._core.store().health()

    def recent_operations(self) -> list[Operation]:
        return list(self._core.recent)

    def counters(self) -> dict[str, int]:
        return {**self._core.counters, "outlier_sweeps": self._core.outliers.sweeps}

    def node_id(self) -> str:
        """The Ray node this actor runs on (`up` and `status` say which, and whether it is the head)."""
        return ray.get_runtime_context().get_node_id()

    def digest(self) -> str:
        """What `up` compares with the config's (actors/deploy/gateway.py): the spec and the replica count."""
        return f"{self._core.spec.digest}/{self._replicas.count}"

    async def ping(self) -> bool:
        """Answered from the event loop that serves the calls: a client whose
        call is silent asks this to tell a slow router from a dead one."""
        return True

    async def ready(self) -> str:
        self._ops.ensure_started()
        self._start.started(ray.get_runtime_context().was_current_actor_reconstructed)
        return self._core.spec.actor_name

    async def release_claims_of(self, actor_ids: list[str]) -> int:
        """Ends the key claims of routers of this capability that `up` killed
        (replaced, or replicas removed): their processes are gone."""
        return await self._core.results.release_owners(actor_ids)

    # --- operations: the audit log, hooks ------------------------------------------
    def chaos_event(self, event: ChaosEvent) -> None:
        """A live fault the supervisor injected or cleared on one of this
        capability's providers: into the audit log (its expiry too, later)."""
        self._ops.ensure_started()
        self._ops.chaos.note(event)

    async def audit_tail(self, n: int = 20) -> dict[str, Any]:
        """The last `n` audit records (oldest first) and a cursor for `audit_since`."""
        if self._ops.audit is None:
            return {"records": [], "cursor": None, "path": None}
        await self._ops.flush_audit()
        records, cursor = await asyncio.to_thread(self._ops.audit.tail, n)
        return {"records": records, "cursor": cursor, "path": str(self._ops.audit.path)}

    async def audit_since(self, cursor: dict[str, int] | None, limit: int = 1000) -> dict[str, Any]:
        if self._ops.audit is None:
            return {"records": [], "cursor": None, "path": None}
        await self._ops.flush_audit()
        records, cursor = await asyncio.to_thread(self._ops.audit.since, cursor, limit)
        return {"records": records, "cursor": cursor, "path": str(self._ops.audit.path)}

    async def ops_report(self, timeout_s: float = 2.0) -> dict[str, Any]:
        """Hooks (calls, failures, load errors) and the audit log (path, lines, errors);
        from replica 0, every replica's status (self-check: replicas down or overloaded)."""
        report = self._ops.report()
        report["delivery"] = {name: {"verdict": v.verdict, "evidence": v.evidence}   # delivery_health.py
                              for name, v in self._core.delivery.verdicts.items() if v.verdict != "healthy"}
        if self._replicas.index == 0:
            statuses = await self._replicas.statuses(self.replica_status(), timeout_s)
            report["replicas"] = [msgspec.to_builtins(r) for r in statuses]
        return report

    async def flush_ops(self) -> None:
        """Write what is buffered now (tests, shutdown)."""
        if self._ops.metrics is not None:
            self._ops.metrics.flush()
        await self._ops.flush_audit()
        await self._ops.hooks.drain()
