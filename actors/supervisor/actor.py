"""The supervisor actor: the registry, collected status reports, self-checks.

Providers push their status here when their health changes; `status_report`
asks every router for its ranked view; `run_full_check` probes every
provider and turns the results into recommendations (actors/ops/recommend.py).
A periodic check runs at the configured interval, with jitter.

A full check probes each provider twice over: through its actor (which
folds the result into health, as live traffic does, so a passing probe lets
a cooled-down provider back in) and, with `supervisor.probe_all_nodes`,
from a task pinned to every alive node (actors/ops/reach.py), which tells
"the provider is down" from "node B cannot reach it". A sampler keeps the
last hour of each provider's status (actors/ops/history.py) for trends, and
records the supervisor's metrics (outbox depth, reachability, served).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import ray

from actors.durable import OutboxItem, StateStore, StoreHealth, StoreUnavailable
from actors.errors import ErrorKind
from actors.messages import (
    CapabilityCheck,
    CapabilityStatus,
    ProbeResult,
    ProviderStatus,
    SelfCheckReport,
    StatusReport,
)
from actors.ops.history import History
from actors.ops.metrics import HeldGauges, RayRecorder
from actors.ops.quota_findings import quota_checks
from actors.ops.reach import Reachability, alive_nodes, probe_from_every_node, probe_targets
from actors.ops.recommend import (
    ProviderTrend,
    facts_of,
    for_capability,
    for_ops,
    for_provider,
    for_reachability,
    for_store,
    for_trends,
)
from actors.ops.shared_store import SharedStoreReport, check_shared_store
from actors.ops.shared_store import recommendations as store_split
from actors.policy.chaos.faults import Fault, FaultCleared, FaultInjected
from actors.specs import GatewaySpec, ProviderSpec, open_spec_store, router_name
from actors.supervisor import chaos_control

log = logging.getLogger("aicmo.supervisor")


def build_self_check(spec: GatewaySpec, probes: dict[tuple[str, str], ProbeResult],
                     statuses: dict[tuple[str, str], ProviderStatus], now: float, *,
                     reach: Reachability | None = None, trends: dict[str, dict[str, ProviderTrend]] | None = None,
                     ops: list[tuple[str, str, dict[str, Any]]] = (), store: StoreHealth | None = None,
                     shared: SharedStoreReport | None = None) -> SelfCheckReport:
    """Pure: probes and statuses (and, when there are any, the reachability
    matrix, the hour's trends, and the actors' ops reports as
    (capability, actor, report)) in, report and recommendations out."""
    checks: list[CapabilityCheck] = []
    recommendations = []
    for cap in spec.capabilities:
        facts = [facts_of(p) for p in cap.providers]
        cap_probes = [probes[(cap.capability, p.name)] for p in cap.providers if (cap.capability, p.name) in probes]
        cap_statuses = {p.name: statuses[(cap.capability, p.name)] for p in cap.providers if (cap.capability, p.name) in statuses}
        cap_trends = (trends or {}).get(cap.capability, {})
        usable = [r.provider for r in cap_probes if r.ok]
        served = any(r.ok and r.delivers for r in cap_probes)
        checks.append(CapabilityCheck(capability=cap.capability, served=served, usable_providers=usable, probes=cap_probes))
        for f in facts:
            recommendations += for_provider(f, cap_statuses.get(f.name), probes.get((cap.capability, f.name)), now)
            if reach is not None:
                recommendations += for_reachability(f, reach.reach_of(cap.capability, f.name))
        recommendations += for_capability(cap.capability, facts, usable, cap_statuses, cap_trends)
        recommendations += for_trends(facts, cap_trends)
        recommendations += quota_checks(cap.providers, cap_statuses, now)
    for capability, actor, report in ops:
        recommendations += for_ops(capability, actor, report)
    if store is not None:
        recommendations += for_store(store, now)
    if shared is not None:
        recommendations += store_split(shared)
    order = {"critical": 0, "warning": 1, "info": 2}
    recommendations.sort(key=lambda r: order.get(r.severity, 3))
    return SelfCheckReport(namespace=spec.namespace, generated_at=now, ok=all(c.served for c in checks),
                           capabilities=checks, recommendations=recommendations, store=store)


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
    def __init__(self, spec: GatewaySpec):
        self._spec = spec
        self._reports: dict[tuple[str, str], ProviderStatus] = {}
        self._last_check: SelfCheckReport | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._random = random.Random()
        self._store: StateStore | None = None
        self._outbox_caps = {c.capability for c in spec.capabilities if any(p.last_resort for p in c.providers)}
        self.drain_log: list[dict[str, Any]] = []
        self._history = History()
        self._reach: Reachability | None = None
        self._metrics: HeldGauges | None = (HeldGauges(RayRecorder(spec.metrics.latency_buckets_ms))
                                             if spec.metrics.enabled else None)
        _start_loops_after_init()

    def store(self) -> StateStore:
        if self._store is None:
            self._store = open_spec_store(self._spec.state)
        return self._store

    async def store_health(self) -> StoreHealth:
        """Asks the store now: its answer, or why it gave none."""
        try:
            await self.store().ping()
        except StoreUnavailable:
            pass  # recorded in the health it returns
        return self.store().health()

    async def audit_hashes(self, idempotency_key: str | None = None, address: str | None = None) -> dict[str, Any]:
        """What the audit log writes for this key or address (HMAC under the
        deployment's secret): how an operator finds a request in it."""
        from actors.ops.privacy import AUDIT_SECRET, hash_address, hash_key

        secret = await self.store().secret(AUDIT_SECRET)
        return {"key": hash_key(idempotency_key, secret) if idempotency_key is not None else None,
                "address": hash_address(address, secret) if address is not None else None}

    async def prune(self) -> dict[str, int]:
        """Deletes what ended longer ago than `state.retention_s`."""
        before = time.time() - self._spec.state.retention_s
        pruned = await self.store().prune(journal_before=before, outbox_before=before)
        if any(pruned.values()):
            log.info("pruned the state store: %s", pruned)
        return pruned

    def _ensure_loop(self) -> None:
        # Started from the first call rather than __init__, so they also start
        # again after Ray restarts this actor.
        if self._tasks:
            return
        loop = asyncio.get_running_loop()

        def every(interval_s: float, step: Callable[[], Any], what: str, jitter_s: float = 0.0) -> None:
            if interval_s > 0:
                self._tasks.append(loop.create_task(self._repeat(interval_s, jitter_s, step, what)))

        s = self._spec.supervisor
        every(s.check_interval_s, self.run_full_check, "periodic self-check", jitter_s=s.check_jitter_s)
        rounds = itertools.count(1)
        every(s.drain_interval_s, lambda: self.drain_once(settle_parked=next(rounds) % 10 == 0), "outbox drain")
        every(s.sample_interval_s, self.sample, "status sampling")
        if self._metrics is not None:
            every(self._spec.metrics.flush_interval_s, self._metrics.refresh, "refreshing gauges")
        every(self._spec.state.prune_interval_s, self.prune, "pruning the state store")

    async def _repeat(self, interval_s: float, jitter_s: float, step: Callable[[], Any], what: str) -> None:
        """Runs `step` (a function or a coroutine function) every `interval_s`
        seconds plus up to `jitter_s`, for the actor's life; a round that fails
        is logged, not fatal."""
        while True:
            await asyncio.sleep(interval_s + (self._random.uniform(0, jitter_s) if jitter_s else 0.0))
            try:
                result = step()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round
                log.exception("%s failed", what)

    async def sample(self) -> int:
        """Ask every provider actor for its status once: history for trends,
        and the outbox depth for metrics. Returns how many answered."""
        async def one(p: ProviderSpec) -> ProviderStatus | None:
            try:
                handle = ray.get_actor(p.actor_name, namespace=self._spec.namespace)
                return await asyncio.wait_for(handle.status.remote(), 5)
            except Exception:  # noqa: BLE001 - a provider that does not answer is not sampled
                return None

        statuses = await asyncio.gather(*(one(p) for c in self._spec.capabilities for p in c.providers))
        now = time.time()
        for status in statuses:
            if status is not None:
                self._history.add(status, now)
                self._reports[(status.capability, status.name)] = status
        await self._record_outbox()
        return sum(1 for s in statuses if s is not None)

    async def _record_outbox(self) -> None:
        if self._metrics is None or not self._outbox_caps:
            return
        counts = await self.store().outbox_counts()
        for cap in sorted(self._outbox_caps | {c for c, _ in counts}):
            for state in ("pending", "parked"):
                self._metrics.set("aicmo_outbox_depth", counts.get((cap, state), 0), {"capability": cap, "state": state})

    def trends(self) -> dict[str, dict[str, ProviderTrend]]:
        now = time.time()
        return {c.capability: self._history.trends(c.capability, now) for c in self._spec.capabilities}

    async def drain_once(self, settle_parked: bool = True) -> list[dict[str, Any]]:
        """One round: for each capability with queued requests and a real
        provider that can take them, have its router deliver them; and ask
        again about parked requests whose outcome was unknown."""
        reports = []
        counts = await self.store().outbox_counts()
        for cap in sorted(self._outbox_caps | {c for c, _ in counts}):
            pending, parked = counts.get((cap, "pending"), 0), counts.get((cap, "parked"), 0)
            if not pending and not (parked and settle_parked):
                continue
            router = ray.get_actor(router_name(cap), namespace=self._spec.namespace)
            if parked and settle_parked:
                reports.append(await router.settle_parked.remote())
            if pending and await router.real_provider_available.remote():
                report = await router.drain_outbox.remote(limit=500, rate_per_s=self._spec.supervisor.drain_rate_per_s)
                reports.append(report)
                if report["delivered"] or report["failed"]:
                    log.warning("outbox %s: delivered %d, failed %d, %d left", cap, len(report["delivered"]),
                                len(report["failed"]), report["left"])
        self.drain_log = (self.drain_log + reports)[-50:]
        return reports

    # --- the outbox, for operators ----------------------------------------------
    async def outbox_list(self, capability: str | None = None, include_done: bool = False,
                          limit: int = 1000) -> list[OutboxItem]:
        states = ("pending", "parked", "delivered", "dropped") if include_done else ("pending", "parked")
        return await self.store().outbox_list(capability, states, limit)

    async def outbox_drop(self, item_id: int) -> OutboxItem | None:
        item = await self.store().outbox_get(item_id)
        if item is None or item.state not in ("pending", "parked"):
            return item
        return await self.store().outbox_update(item_id, time.time(), state="dropped", error="dropped by an operator")

    async def outbox_replay(self, ids: list[int] | None = None, force: bool = False) -> list[dict[str, Any]]:
        """Deliver these items now (all pending ones if none are named). A
        parked item is first asked about again; `force` tells the gateway an
        operator checked that it was not delivered, so it may be sent."""
        store = self.store()
        items = [await store.outbox_get(i) for i in ids] if ids else await store.outbox_list(None, ("pending",))
        by_cap: dict[str, list[int]] = {}
        for item in items:
            if item is not None and item.state in ("pending", "parked"):
                by_cap.setdefault(item.capability, []).append(item.id)
        reports = []
        for cap, cap_ids in by_cap.items():
            router = ray.get_actor(router_name(cap), namespace=self._spec.namespace)
            reports.append(await router.replay_outbox.remote(cap_ids, force))
        return reports

    # --- live faults (chaos_control.py) ---------------------------------------------
    def _actor(self, name: str) -> Any:
        return ray.get_actor(name, namespace=self._spec.namespace)

    async def chaos_inject(self, fault: Fault) -> FaultInjected:
        return await chaos_control.inject(self._spec, fault, self._actor)

    async def chaos_clear(self, by: str, capability: str | None = None, provider: str | None = None) -> list[FaultCleared]:
        return await chaos_control.clear(self._spec, time.time(), by, self._actor, capability, provider)

    async def chaos_list(self) -> list[Fault]:
        return await chaos_control.faults(self._spec, self._actor)

    async def ready(self) -> str:
        self._ensure_loop()
        return "supervisor"

    def digest(self) -> str:
        return self._spec.digest

    def spec(self) -> GatewaySpec:
        # Any client of the cluster may ask: the spec goes out without secrets.
        return self._spec.without_secrets()

    async def report(self, status: ProviderStatus) -> None:
        self._ensure_loop()
        self._reports[(status.capability, status.name)] = status

    def registry(self) -> dict[str, Any]:
        return {
            "namespace": self._spec.namespace,
            "source": self._spec.source,
            "routers": [c.actor_name for c in self._spec.capabilities],
            "providers": [p.actor_name for c in self._spec.capabilities for p in c.providers],
        }

    def pushed_reports(self) -> list[ProviderStatus]:
        return list(self._reports.values())

    async def status_report(self, timeout_s: float = 10.0) -> StatusReport:
        self._ensure_loop()

        async def one(cap: Any) -> CapabilityStatus:
            try:
                router = ray.get_actor(cap.actor_name, namespace=self._spec.namespace)
                return await asyncio.wait_for(router.status.remote(), timeout_s)
            except Exception as exc:  # noqa: BLE001 - fall back to what providers pushed
                providers = [self._reports.get((cap.capability, p.name)) or ProviderStatus(
                    name=p.name, capability=cap.capability, adapter=p.adapter, reachable=False) for p in cap.providers]
                return CapabilityStatus(capability=cap.capability, providers=providers,
                                        skipped={"router": f"router did not answer: {type(exc).__name__}"})

        caps, store = await asyncio.gather(asyncio.gather(*(one(c) for c in self._spec.capabilities)),
                                           self.store_health())
        return StatusReport(namespace=self._spec.namespace, generated_at=time.time(), capabilities=list(caps),
                            store=store)

    async def run_full_check(self) -> SelfCheckReport:
        self._ensure_loop()
        sup = self._spec.supervisor
        timeout_s = sup.probe_timeout_s
        providers = [p for c in self._spec.capabilities for p in c.providers]

        async def probe(p: ProviderSpec) -> tuple[ProbeResult, ProviderStatus | None, str | None]:
            try:
                handle = ray.get_actor(p.actor_name, namespace=self._spec.namespace)
                result = await asyncio.wait_for(handle.probe.remote(timeout_s), timeout_s + 2)
                status = await asyncio.wait_for(handle.status.remote(), 5)
                node = await asyncio.wait_for(handle.node_id.remote(), 5) if sup.probe_all_nodes else None
                return result, status, node
            except Exception as exc:  # noqa: BLE001
                return ProbeResult(provider=p.name, capability=p.capability, ok=False, error_kind=ErrorKind.UNAVAILABLE,
                                   error=f"provider actor did not answer: {type(exc).__name__}", delivers=p.delivers), None, None

        async def from_nodes() -> Any:
            if not sup.probe_all_nodes or not probe_targets(providers):
                return []
            try:
                nodes = await asyncio.to_thread(alive_nodes)
                return await probe_from_every_node(providers, timeout_s, sup.node_probe_timeout_s, nodes)
            except Exception:  # noqa: BLE001 - the matrix is extra evidence; the check goes on without it
                log.exception("probing from every node failed")
                return []

        async def shared_store() -> SharedStoreReport | None:
            try:
                return await check_shared_store(self._spec, timeout_s=sup.node_probe_timeout_s)
            except Exception:  # noqa: BLE001 - extra evidence; the check goes on without it
                log.exception("checking that every node shares the state store failed")
                return None

        results, node_probes, ops, store, shared = await asyncio.gather(
            asyncio.gather(*(probe(p) for p in providers)), from_nodes(), self._ops_reports(), self.store_health(),
            shared_store())
        probes = {(r.capability, r.provider): r for r, _, _ in results}
        statuses = {(s.capability, s.name): s for _, s, _ in results if s is not None}
        self._reports.update(statuses)
        now = time.time()
        for status in statuses.values():
            self._history.add(status, now)
        if node_probes:
            self._reach = Reachability(generated_at=now, nodes=node_probes, actor_nodes={
                f"{r.capability}/{r.provider}": node for r, _, node in results if node})
        self._last_check = build_self_check(self._spec, probes, statuses, now, reach=self._reach if node_probes else None,
                                            trends=self.trends(), ops=ops, store=store, shared=shared)
        await self._record_check(self._last_check)
        return self._last_check

    async def _ops_reports(self) -> list[tuple[str, str, dict[str, Any]]]:
        """What routers (and providers with health hooks) say of their hooks and audit log."""
        actors = [(c.capability, c.actor_name) for c in self._spec.capabilities]
        actors += [(p.capability, p.actor_name) for c in self._spec.capabilities for p in c.providers
                   if p.hooks.on_health_change]

        async def one(capability: str, name: str) -> tuple[str, str, dict[str, Any]] | None:
            try:
                handle = ray.get_actor(name, namespace=self._spec.namespace)
                return capability, name, await asyncio.wait_for(handle.ops_report.remote(), 5)
            except Exception:  # noqa: BLE001 - an actor that does not answer is reported elsewhere
                return None

        found = await asyncio.gather(*(one(c, n) for c, n in actors))
        return [f for f in found if f is not None]

    async def _record_check(self, report: SelfCheckReport) -> None:
        if self._metrics is None:
            return
        for cap in report.capabilities:
            self._metrics.set("aicmo_capability_served", 1.0 if cap.served else 0.0, {"capability": cap.capability})
        if self._reach is not None:
            self._metrics.forget("aicmo_reachable")  # a node gone since the last check is not reported
            for n in self._reach.nodes:
                for r in n.results:
                    self._metrics.set("aicmo_reachable", 1.0 if r.ok else 0.0, {
                        "capability": r.capability, "provider": r.provider,
                        "node": f"{n.node.address}:{n.node.node_id[:8]}"})
        await self._record_outbox()

    def reachability(self) -> Reachability | None:
        """The matrix of the last full check: each probed provider from each node."""
        return self._reach

    def last_check(self) -> SelfCheckReport | None:
        return self._last_check
