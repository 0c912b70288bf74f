"""The self-check's report, built from the evidence the supervisor gathered
(self_check.py): pure, no Ray, no clock; tested with hand-built probes and
statuses."""

from __future__ import annotations

from typing import Any

from actors.durable import StoreHealth
from actors.messages import CapabilityCheck, ProbeResult, ProviderStatus, SelfCheckReport
from actors.ops.gcs import GcsFacts, gcs_findings, with_shared_store
from actors.ops.exposure import as_recommendations, exposures
from actors.ops.quota_findings import quota_checks
from actors.ops.reach import Reachability
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
from actors.ops.shared_store import SharedStoreReport
from actors.ops.shared_store import recommendations as store_split
from actors.specs import GatewaySpec

__all__ = ["build_self_check"]

_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def build_self_check(spec: GatewaySpec, probes: dict[tuple[str, str], ProbeResult],
                     statuses: dict[tuple[str, str], ProviderStatus], now: float, *,
                     reach: Reachability | None = None, trends: dict[str, dict[str, ProviderTrend]] | None = None,
                     ops: list[tuple[str, str, dict[str, Any]]] = (), store: StoreHealth | None = None,
                     shared: SharedStoreReport | None = None, gcs: GcsFacts | None = None) -> SelfCheckReport:
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
    if gcs is not None:  # whether the cluster survives its head node
        recommendations += [r for f in gcs_findings(with_shared_store(gcs, shared))
                            if (r := f.recommendation()) is not None]
    recommendations += as_recommendations(exposures(spec))
    recommendations.sort(key=lambda r: _SEVERITY_ORDER.get(r.severity, 3))
    return SelfCheckReport(namespace=spec.namespace, generated_at=now, ok=all(c.served for c in checks),
                           capabilities=checks, recommendations=recommendations, store=store)
