"""What the in-process baselines share: a provider (a name and an adapter
called in this process) and the trace of one request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from actors.adapters.simulated import SimulatedAdapter
from actors.messages import CallContext


@dataclass(frozen=True)
class TraceAttempt:
    provider: str
    ok: bool
    latency_ms: float


@dataclass
class Trace:
    """One request: the seed's (success, result, provider_used), plus every
    provider call it made, so attempts can be counted like the gateway's."""

    ok: bool
    value: Any = None
    provider: str | None = None
    attempts: list[TraceAttempt] = field(default_factory=list)
    error: str | None = None


@dataclass
class InProcessProvider:
    name: str
    adapter: Any

    async def call(self, method: str, payload: Any, timeout_s: float = 10.0) -> Any:
        ctx = CallContext(request_id=uuid.uuid4().hex, method=method, timeout_s=timeout_s)
        return await self.adapter.call(method, payload, ctx)


def simulated_providers(capability: str, specs: list[dict[str, Any]]) -> list[InProcessProvider]:
    """`[{"name": ..., "settings": {...}}]` (the gateway config's provider
    entries) -> in-process simulated providers with the same settings."""
    out = []
    for s in specs:
        settings = SimulatedAdapter.Settings.model_validate(s.get("settings", {}))
        out.append(InProcessProvider(s["name"], SimulatedAdapter(settings, capability=capability, provider=s["name"])))
    return out
