"""The supervisor actor: the registry, collected status reports, self-checks.

Providers push their status here when their health changes; `status_report`
asks every router for its ranked view; `run_full_check` probes every
provider and turns the results into recommendations (policy.recommend).
A periodic check runs at the configured interval, with jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import ray

from actors.messages import (
    CapabilityCheck,
    CapabilityStatus,
    ProbeResult,
    ProviderStatus,
    SelfCheckReport,
    StatusReport,
)
from actors.errors import ErrorKind
from actors.policy.recommend import ProviderFacts, for_capability, for_provider
from actors.runtime.specs import GatewaySpec, ProviderSpec

log = logging.getLogger("aicmo.supervisor")


def facts_of(p: ProviderSpec) -> ProviderFacts:
    return ProviderFacts(name=p.name, capability=p.capability, adapter=p.adapter, config_path=p.config_path,
                         env_refs=p.env_refs, auth_settings=p.auth_settings, delivers=p.delivers, has_probe=p.has_probe)


def build_self_check(spec: GatewaySpec, probes: dict[tuple[str, str], ProbeResult],
                     statuses: dict[tuple[str, str], ProviderStatus], now: float) -> SelfCheckReport:
    """Pure: probes and statuses in, report and recommendations out."""
    checks: list[CapabilityCheck] = []
    recommendations = []
    for cap in spec.capabilities:
        facts = [facts_of(p) for p in cap.providers]
        cap_probes = [probes[(cap.capability, p.name)] for p in cap.providers if (cap.capability, p.name) in probes]
        cap_statuses = {p.name: statuses[(cap.capability, p.name)] for p in cap.providers if (cap.capability, p.name) in statuses}
        usable = [r.provider for r in cap_probes if r.ok]
        served = any(r.ok and r.delivers for r in cap_probes)
        checks.append(CapabilityCheck(capability=cap.capability, served=served, usable_providers=usable, probes=cap_probes))
        for f in facts:
            recommendations += for_provider(f, cap_statuses.get(f.name), probes.get((cap.capability, f.name)), now)
        recommendations += for_capability(cap.capability, facts, usable, cap_statuses)
    order = {"critical": 0, "warning": 1, "info": 2}
    recommendations.sort(key=lambda r: order.get(r.severity, 3))
    return SelfCheckReport(namespace=spec.namespace, generated_at=now, ok=all(c.served for c in checks),
                           capabilities=checks, recommendations=recommendations)


@ray.remote
class SupervisorActor:
    def __init__(self, spec: GatewaySpec):
        self._spec = spec
        self._reports: dict[tuple[str, str], ProviderStatus] = {}
        self._last_check: SelfCheckReport | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._random = random.Random()

    def _ensure_loop(self) -> None:
        # Started from the first call rather than __init__, so it also starts
        # again after Ray restarts this actor.
        if self._loop_task is None and self._spec.supervisor.check_interval_s > 0:
            self._loop_task = asyncio.get_running_loop().create_task(self._periodic())

    async def _periodic(self) -> None:
        s = self._spec.supervisor
        while True:
            await asyncio.sleep(s.check_interval_s + self._random.uniform(0, s.check_jitter_s))
            try:
                await self.run_full_check()
            except Exception:  # noqa: BLE001 - the loop must outlive one bad check
                log.exception("periodic self-check failed")

    async def ready(self) -> str:
        self._ensure_loop()
        return "supervisor"

    def digest(self) -> str:
        return self._spec.digest

    def spec(self) -> GatewaySpec:
        return self._spec

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

        caps = await asyncio.gather(*(one(c) for c in self._spec.capabilities))
        return StatusReport(namespace=self._spec.namespace, generated_at=time.time(), capabilities=list(caps))

    async def run_full_check(self) -> SelfCheckReport:
        self._ensure_loop()
        timeout_s = self._spec.supervisor.probe_timeout_s
        providers = [p for c in self._spec.capabilities for p in c.providers]

        async def probe(p: ProviderSpec) -> tuple[ProbeResult, ProviderStatus | None]:
            try:
                handle = ray.get_actor(p.actor_name, namespace=self._spec.namespace)
                result = await asyncio.wait_for(handle.probe.remote(timeout_s), timeout_s + 2)
                status = await asyncio.wait_for(handle.status.remote(), 5)
                return result, status
            except Exception as exc:  # noqa: BLE001
                return ProbeResult(provider=p.name, capability=p.capability, ok=False, error_kind=ErrorKind.UNAVAILABLE,
                                   error=f"provider actor did not answer: {type(exc).__name__}", delivers=p.delivers), None

        results = await asyncio.gather(*(probe(p) for p in providers))
        probes = {(r.capability, r.provider): r for r, _ in results}
        statuses = {(s.capability, s.name): s for _, s in results if s is not None}
        self._reports.update(statuses)
        self._last_check = build_self_check(self._spec, probes, statuses, time.time())
        return self._last_check

    def last_check(self) -> SelfCheckReport | None:
        return self._last_check
