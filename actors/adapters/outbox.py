"""The outbox: the last resort of a capability, instead of the seed's no-op.

When no real provider can take a request (all down, throttled past the
deadline, or the retry budget spent), the router hands it here. It is
stored durably and the answer is `ok` with a value that says plainly it was
queued, not delivered. The supervisor has the router deliver queued requests
once a real provider is back, oldest first, each exactly once (same key).

Only capabilities that change something outside are queued; reads
(enrichment, verification, reply fetching) are useless later and are not.
"""

from __future__ import annotations

from typing import Any

import msgspec

from actors.adapters.base import Adapter, AdapterSettings
from actors.clock import SYSTEM_CLOCK, Clock
from actors.errors import StoreUnavailable, TransientError
from actors.messages import CallContext
from actors.payloads import Payload


class OutboxSettings(AdapterSettings):
    pass


class OutboxAdapter(Adapter):
    name = "outbox"
    Settings = OutboxSettings
    reaches_network = False
    capabilities = frozenset({"email_sending", "social_posting", "crm_sync", "webhook_dispatch"})
    delivers = False
    last_resort = True
    # Queuing the same key twice keeps one item.
    resends_deduplicated = frozenset({"send_email", "publish_post", "upsert_contact", "dispatch"})

    def __init__(self, settings: OutboxSettings, **kw: Any):
        super().__init__(settings, **kw)
        self._store: Any = None
        self._clock = SYSTEM_CLOCK

    def attach(self, store: Any, clock: Clock = SYSTEM_CLOCK) -> None:
        """The provider actor's store, and its clock: an item is stamped with the time it was queued."""
        self._store = store
        self._clock = clock

    async def call(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        if ctx.dry_run:
            return await self.dry_run(method, payload, ctx)
        if self._store is None:
            raise TransientError(f"{self.provider}: no state store attached")
        try:
            item = await self._store.outbox_add(
                capability=self.capability, method=method, payload=msgspec.to_builtins(payload),
                idempotency_key=ctx.idempotency_key or ctx.request_id, request_id=ctx.request_id, reason="queued",
                now=self._clock.time())
        except StoreUnavailable as exc:
            # A commit cut off may have landed: queuing the key again is harmless.
            raise TransientError(f"{self.provider}: {exc}", maybe_delivered=True) from None
        return {"queued": True, "delivered": False, "outbox_id": item.id,
                "note": f"no provider could take it now: queued as outbox item {item.id}, "
                        "to be delivered once a provider is back"}

    async def reconcile(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any] | None:
        item = await self._store.outbox_find(self.capability, ctx.idempotency_key or ctx.request_id)
        return None if item is None else {"queued": True, "delivered": False, "outbox_id": item.id}

    async def probe(self) -> None:
        if self._store is None:
            raise TransientError(f"{self.provider}: no state store attached")
        try:
            await self._store.outbox_counts()
        except StoreUnavailable as exc:  # the file is gone, locked or unreadable; the database is down
            raise TransientError(f"{self.provider}: {exc}") from None
