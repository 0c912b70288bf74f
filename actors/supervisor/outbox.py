"""The outbox, from the supervisor: draining it (each capability's router
delivers what its queue holds, once a real provider can take it; parked
requests are asked about again), and what operators do to it (list, drop,
replay: `aicmo-gateway outbox ...`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from actors.clock import Clock
from actors.durable import OutboxItem, StateStore
from actors.names import router_name
from actors.specs import GatewaySpec
from actors.supervisor.status import Lookup

__all__ = ["OutboxDesk", "outbox_capabilities"]

log = logging.getLogger("aicmo.supervisor")

# Drain reports kept for `drain_log`.
KEPT_REPORTS = 50
# Items one router delivers in one drain round.
DRAIN_LIMIT = 500


def outbox_capabilities(spec: GatewaySpec) -> set[str]:
    """The capabilities with an outbox (a last-resort provider)."""
    return {c.capability for c in spec.capabilities if any(p.last_resort for p in c.providers)}


class OutboxDesk:
    def __init__(self, spec: GatewaySpec, store: Callable[[], StateStore], actor: Lookup, clock: Clock):
        self._spec = spec
        self._store = store
        self._actor = actor
        self._clock = clock
        self._capabilities = outbox_capabilities(spec)
        self.drain_log: list[dict[str, Any]] = []

    async def drain_once(self, settle_parked: bool = True) -> list[dict[str, Any]]:
        """One round: for each capability with queued requests and a real
        provider that can take them, have its router deliver them; and ask
        again about parked requests whose outcome was unknown."""
        reports = []
        counts = await self._store().outbox_counts()
        for cap in sorted(self._capabilities | {c for c, _ in counts}):
            pending, parked = counts.get((cap, "pending"), 0), counts.get((cap, "parked"), 0)
            if not pending and not (parked and settle_parked):
                continue
            router = self._actor(router_name(cap))
            if parked and settle_parked:
                reports.append(await router.settle_parked.remote())
            if pending and await router.real_provider_available.remote():
                report = await router.drain_outbox.remote(limit=DRAIN_LIMIT,
                                                          rate_per_s=self._spec.supervisor.drain_rate_per_s)
                reports.append(report)
                if report["delivered"] or report["failed"]:
                    log.warning("outbox %s: delivered %d, failed %d, %d left", cap, len(report["delivered"]),
                                len(report["failed"]), report["left"])
        self.drain_log = (self.drain_log + reports)[-KEPT_REPORTS:]
        return reports

    async def list(self, capability: str | None = None, include_done: bool = False,
                   limit: int = 1000) -> list[OutboxItem]:
        states = ("pending", "parked", "delivered", "dropped") if include_done else ("pending", "parked")
        return await self._store().outbox_list(capability, states, limit)

    async def drop(self, item_id: int) -> OutboxItem | None:
        store = self._store()
        item = await store.outbox_get(item_id)
        if item is None or item.state not in ("pending", "parked"):
            return item
        return await store.outbox_update(item_id, self._clock.time(), state="dropped", error="dropped by an operator")

    async def replay(self, ids: list[int] | None = None, force: bool = False) -> list[dict[str, Any]]:
        """Deliver these items now (all pending ones if none are named). A
        parked item is first asked about again; `force` tells the gateway an
        operator checked that it was not delivered, so it may be sent."""
        store = self._store()
        items = [await store.outbox_get(i) for i in ids] if ids else await store.outbox_list(None, ("pending",))
        by_cap: dict[str, list[int]] = {}
        for item in items:
            if item is not None and item.state in ("pending", "parked"):
                by_cap.setdefault(item.capability, []).append(item.id)
        reports = []
        for cap, cap_ids in by_cap.items():
            reports.append(await self._actor(router_name(cap)).replay_outbox.remote(cap_ids, force))
        return reports
