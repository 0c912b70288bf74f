"""What a router loads and starts once its process is up, kept apart from
the actor's calls (actor.py): each thing at the moment it is first needed,
so that an idle router never opens the store (`up` starts every router at
once: 9 s instead of 12 for the default config, 3 MB less per router).

- the audit key, before the first audit line (asked again in the background
  while the store does not answer; lines meanwhile are hashed without it);
- the spent quotas, before the first request (a restarted router must not
  send one call past a limit);
- the claims its previous incarnation left, released as soon as Ray has
  restarted it (a sibling holding the resend of such a key waits for them);
- the live faults its providers hold, adopted so that their expiry is audited;
- the outlier sweep (ejection.py) and the delivery-events loop
  (delivery_health.py, drop_fallback.py), when their policies are on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors.durable import StoreUnavailable
from actors.ops.observers import RouterOps
from actors.ops.privacy import AUDIT_SECRET
from actors.router.core import RouterCore
from actors.router.provider_calls import ProviderCalls

log = logging.getLogger("aicmo.router")

__all__ = ["AUDIT_KEY_RETRY_S", "RouterStart"]

# How often a router asks the store again for the audit key it could not get.
AUDIT_KEY_RETRY_S = 5.0


class RouterStart:
    def __init__(self, core: RouterCore, ops: RouterOps, calls: ProviderCalls):
        self._core, self._ops, self._calls = core, ops, calls
        self._key_retry: asyncio.Future[None] | None = None
        self._quotas: asyncio.Future[None] | None = None
        self._outlier_task: asyncio.Future[None] | None = None
        self._delivery_task: asyncio.Future[None] | None = None
        self._released: asyncio.Future[None] | None = None
        ops.audit_key_loader = self._audit_key_before_write

    def started(self, reconstructed: bool) -> None:
        """From the actor's `ready` (called at start and after each restart):
        the background work that does not wait for a request."""
        core = self._core
        if self._released is None and reconstructed:
            self._released = asyncio.ensure_future(self._release_predecessors())
        asyncio.ensure_future(self._adopt_faults())
        if self._outlier_task is None and core.outliers.policy.enabled:
            outliers = core.outliers
            self._outlier_task = asyncio.ensure_future(outliers.run(
                lambda: core.seen.candidates(core.clock.time()),
                lambda name: self._calls.call(name, "status", (), 5.0),
                lambda events: self._ops.outliers(events, outliers.ejected(core.clock.time()), outliers.panic)))
        if self._delivery_task is None and (core.delivery.policy.enabled or core.drops.policy.enabled):
            # delivery_health.py, and drop_fallback.py over the same events
            self._delivery_task = asyncio.ensure_future(core.delivery.run(
                core.store, lambda transitions: self._ops.delivery_health(transitions),
                lambda stored: core.drops.handle(stored, core.resend)))

    async def quotas_known(self) -> None:
        """Requests wait for the one load of spent quotas (`_load_quotas`), started by the first."""
        if self._quotas is None:
            self._quotas = asyncio.ensure_future(self._load_quotas())
        if not self._quotas.done():
            await asyncio.shield(self._quotas)

    async def _load_quotas(self, timeout_s: float = 10.0) -> None:
        """Which providers' quotas are spent, from the store, before the first
        reply says. Asked before its first request, not at start."""
        core = self._core
        if not any(p.metered for p in core.spec.providers) or core.seen.quotas.learned:
            return
        try:
            await asyncio.wait_for(core.seen.quotas.load(core.store(), core.capability, core.clock.time()), timeout_s)
        except (StoreUnavailable, asyncio.TimeoutError) as exc:
            log.warning("%s: quotas not loaded from the store (%s); replies will tell", core.capability, exc)

    async def _release_predecessors(self, timeout_s: float = 30.0) -> None:
        """A restarted router ends the claims its dead process left at once, not
        at its first request (a router that never had claims opens the store for nothing)."""
        try:
            await asyncio.wait_for(asyncio.shield(self._core.results.release_predecessors()), timeout_s)
        except Exception as exc:  # noqa: BLE001 - the first claim tries again
            log.warning("%s: claims of the previous incarnation not released yet (%s)", self._core.capability, exc)

    async def _adopt_faults(self, timeout_s: float = 5.0) -> None:
        """Live faults its providers hold from before this router started: audited when they expire."""
        for name, spec in self._core.providers.items():
            try:
                fault: Any = None if spec.last_resort else \
                    await asyncio.wait_for(self._calls.handle(name).fault.remote(), timeout_s)
            except Exception:  # noqa: BLE001 - not answering: restarting, and a restart ends its fault
                continue
            if fault is not None:
                self._ops.chaos.adopt(fault)

    async def _load_audit_key(self, timeout_s: float = 10.0) -> None:
        """The audit log hashes keys and addresses with the deployment's secret,
        kept in the store. Until the store answers, lines are hashed without
        it (marked `sha256:`); the key is asked for again in the background."""
        audit = self._ops.audit
        if audit is None or audit.key is not None:
            return
        try:
            audit.key = await asyncio.wait_for(self._core.store().secret(AUDIT_SECRET), timeout_s)
        except (StoreUnavailable, asyncio.TimeoutError) as exc:
            log.warning("%s: the audit key is not available yet (%s); trying again", self._core.capability, exc)
            if self._key_retry is None or self._key_retry.done():
                self._key_retry = asyncio.ensure_future(self._retry_audit_key())

    async def _audit_key_before_write(self) -> None:
        """The audit key, loaded before the first line is written rather than at start."""
        if self._key_retry is None or self._key_retry.done():
            await self._load_audit_key()

    async def _retry_audit_key(self) -> None:
        while self._ops.audit is not None and self._ops.audit.key is None:
            await self._core.clock.sleep(AUDIT_KEY_RETRY_S)
            await self._load_audit_key()
