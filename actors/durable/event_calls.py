"""A store's delivery events, suppressions and sent messages (issue 22):
the same calls on SQLite and PostgreSQL, each store handing them to its own
`_events` (sqlite/events.py, postgres/events.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors.durable.store import SentMessage, StoredEvent, Suppression
from actors.events.model import DeliveryEvent, RequestRefs

__all__ = ["DeliveryEventCalls"]


class DeliveryEventCalls:
    _events: Any

    async def events_put(self, capability: str, provider: str, events: Sequence[DeliveryEvent],
                         received_at: float) -> int:
        return await self._events.put(capability, provider, events, received_at)

    async def events_find(self, refs: RequestRefs, limit: int = 1000) -> list[StoredEvent]:
        return await self._events.find(refs, limit)

    async def events_since(self, capability: str, received_after: float, limit: int = 10000) -> list[StoredEvent]:
        return await self._events.since(capability, received_after, limit)

    async def events_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        return await self._events.counts()

    async def suppress_add(self, rows: Sequence[Suppression]) -> int:
        return await self._events.suppress_add(rows)

    async def suppress_list(self, capability: str | None = None, addresses: Sequence[str] | None = None
                            ) -> list[Suppression]:
        return await self._events.suppress_list(capability, addresses)

    async def suppress_remove(self, address: str, capability: str | None = None) -> int:
        return await self._events.suppress_remove(address, capability)

    async def sent_put(self, rows: Sequence[SentMessage]) -> None:
        await self._events.sent_put(rows)

    async def sent_find(self, capability: str, refs: RequestRefs) -> list[SentMessage]:
        return await self._events.sent_find(capability, refs)

    async def sent_mark_resent(self, capability: str, request_id: str, now: float) -> bool:
        return await self._events.sent_mark_resent(capability, request_id, now)
