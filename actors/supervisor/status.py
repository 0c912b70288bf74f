"""The status the supervisor holds: what provider actors pushed (or a
check or a sample found), and the last hour of samples, for trends
(actors/ops/history.py). It asks the routers for their ranked view and the
providers for their status through `actor(name)`, a lookup by name in the
gateway's namespace: no Ray code here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from actors.clock import Clock
from actors.messages import CapabilityStatus, ProviderStatus
from actors.ops.history import History
from actors.ops.recommend import ProviderTrend
from actors.specs import CapabilitySpec, GatewaySpec, ProviderSpec

__all__ = ["Lookup", "StatusBoard"]

Lookup = Callable[[str], Any]

# How long a provider actor may take to answer a sample.
SAMPLE_TIMEOUT_S = 5


class StatusBoard:
    def __init__(self, spec: GatewaySpec, actor: Lookup, clock: Clock):
        self._spec = spec
        self._actor = actor
        self._clock = clock
        self._reports: dict[tuple[str, str], ProviderStatus] = {}
        self._history = History()

    def push(self, status: ProviderStatus) -> None:
        """A provider's status, as it pushed it (on a change of health)."""
        self._reports[(status.capability, status.name)] = status

    def pushed(self) -> list[ProviderStatus]:
        return list(self._reports.values())

    def registry(self) -> dict[str, Any]:
        spec = self._spec
        return {
            "namespace": spec.namespace,
            "source": spec.source,
            "routers": [c.actor_name for c in spec.capabilities],
            "providers": [p.actor_name for c in spec.capabilities for p in c.providers],
        }

    def found(self, statuses: Iterable[ProviderStatus], now: float) -> None:
        """Statuses a check or a sample read at `now`: kept, and added to the history."""
        for status in statuses:
            self._history.add(status, now)
            self._reports[(status.capability, status.name)] = status

    async def sample(self) -> int:
        """Asks every provider actor for its status once; returns how many answered."""
        async def one(p: ProviderSpec) -> ProviderStatus | None:
            try:
                return await asyncio.wait_for(self._actor(p.actor_name).status.remote(), SAMPLE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a provider that does not answer is not sampled
                return None

        statuses = await asyncio.gather(*(one(p) for c in self._spec.capabilities for p in c.providers))
        answered = [s for s in statuses if s is not None]
        self.found(answered, self._clock.time())
        return len(answered)

    def trends(self) -> dict[str, dict[str, ProviderTrend]]:
        now = self._clock.time()
        return {c.capability: self._history.trends(c.capability, now) for c in self._spec.capabilities}

    async def capabilities(self, timeout_s: float) -> list[CapabilityStatus]:
        """Each router's ranked view; for a router that does not answer, what its providers pushed."""
        async def one(cap: CapabilitySpec) -> CapabilityStatus:
            try:
                return await asyncio.wait_for(self._actor(cap.actor_name).status.remote(), timeout_s)
            except Exception as exc:  # noqa: BLE001 - fall back to what providers pushed
                providers = [self._reports.get((cap.capability, p.name)) or ProviderStatus(
                    name=p.name, capability=cap.capability, adapter=p.adapter, reachable=False) for p in cap.providers]
                return CapabilityStatus(capability=cap.capability, providers=providers,
                                        skipped={"router": f"router did not answer: {type(exc).__name__}"})

        return list(await asyncio.gather(*(one(c) for c in self._spec.capabilities)))
