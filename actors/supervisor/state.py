"""The state store as the supervisor uses it: opened on first use (the
first awaited call connects), asked for its health, pruned, and holding
the secret the audit log's hashes are keyed with."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from actors.clock import Clock
from actors.durable import StateStore, StoreHealth, StoreUnavailable
from actors.specs import StateSpec, open_spec_store

__all__ = ["SupervisorState"]

log = logging.getLogger("aicmo.supervisor")


class SupervisorState:
    def __init__(self, state: StateSpec, clock: Clock,
                 open_store: Callable[[StateSpec], StateStore] = open_spec_store):
        self._state = state
        self._clock = clock
        self._open = open_store
        self._store: StateStore | None = None

    def store(self) -> StateStore:
        if self._store is None:
            self._store = self._open(self._state)
        return self._store

    async def health(self) -> StoreHealth:
        """Asks the store now: its answer, or why it gave none."""
        try:
            await self.store().ping()
        except StoreUnavailable:
            pass  # recorded in the health it returns
        return self.store().health()

    async def prune(self) -> dict[str, int]:
        """Deletes what ended longer ago than `state.retention_s`."""
        before = self._clock.time() - self._state.retention_s
        pruned = await self.store().prune(journal_before=before, outbox_before=before)
        if any(pruned.values()):
            log.info("pruned the state store: %s", pruned)
        return pruned

    async def audit_hashes(self, idempotency_key: str | None = None, address: str | None = None) -> dict[str, Any]:
        """What the audit log writes for this key or address (HMAC under the
        deployment's secret): how an operator finds a request in it."""
        from actors.ops.privacy import AUDIT_SECRET, hash_address, hash_key

        secret = await self.store().secret(AUDIT_SECRET)
        return {"key": hash_key(idempotency_key, secret) if idempotency_key is not None else None,
                "address": hash_address(address, secret) if address is not None else None}
