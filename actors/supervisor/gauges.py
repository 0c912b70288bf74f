"""The supervisor's metrics: the outbox's depth, whether each capability is
served and which provider each node reaches, set when a sample or a check
reads them and exported again between (HeldGauges)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from actors.messages import SelfCheckReport
from actors.ops.metrics import HeldGauges
from actors.ops.reach import Reachability

__all__ = ["SupervisorGauges"]

OutboxCounts = Callable[[], Awaitable[dict[tuple[str, str], int]]]


class SupervisorGauges:
    def __init__(self, gauges: HeldGauges | None, outbox_capabilities: set[str], outbox_counts: OutboxCounts):
        self._gauges = gauges                   # None: metrics are off
        self._capabilities = outbox_capabilities
        self._counts = outbox_counts

    def refresh(self) -> None:
        if self._gauges is not None:
            self._gauges.refresh()

    async def record_outbox(self) -> None:
        """The outbox's depth per capability and state (read from the store
        only when there are metrics to set and an outbox to count)."""
        if self._gauges is None or not self._capabilities:
            return
        counts = await self._counts()
        for cap in sorted(self._capabilities | {c for c, _ in counts}):
            for state in ("pending", "parked"):
                self._gauges.set("aicmo_outbox_depth", counts.get((cap, state), 0), {"capability": cap, "state": state})

    async def record_check(self, report: SelfCheckReport, reach: Reachability | None) -> None:
        if self._gauges is None:
            return
        for cap in report.capabilities:
            self._gauges.set("aicmo_capability_served", 1.0 if cap.served else 0.0, {"capability": cap.capability})
        if reach is not None:
            self._gauges.forget("aicmo_reachable")  # a node gone since the last check is not reported
            for n in reach.nodes:
                for r in n.results:
                    self._gauges.set("aicmo_reachable", 1.0 if r.ok else 0.0, {
                        "capability": r.capability, "provider": r.provider,
                        "node": f"{n.node.address}:{n.node.node_id[:8]}"})
        await self.record_outbox()
