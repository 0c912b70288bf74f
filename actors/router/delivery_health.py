"""A router's provider health from delivery outcomes (policy/
delivery_health.py), wired: the one owner of its capability's delivery
verdicts.

- `run`: the router's background task: every `interval_s`, read the
  capability's delivery events of the window from the store, judge, and
  publish the transitions (audit log, log);
- `ejections`: what the plan reads, as outlier ejections (planner.py):
  an ejected provider is tried after the others, never dropped;
- `annotate`: each provider's verdict and its evidence in the status.

Verdicts are not persisted: a restarted router reads the same events from
the store and comes to the same verdict within a round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from actors.clock import Clock
from actors.messages import CapabilityStatus, ProviderStatus
from actors.policy.delivery_health import (
    DeliveryHealthPolicy,
    DeliveryTransition,
    DeliveryVerdict,
    judge,
    outcomes_by_provider,
)
from actors.policy.outliers.detection import EjectionState

__all__ = ["DeliveryHealth"]

log = logging.getLogger("aicmo.delivery")
# What ejection_reason says for a provider ejected on its delivery outcomes.
EJECT_REASON = "delivery_drops"


class DeliveryHealth:
    def __init__(self, capability: str, policy: DeliveryHealthPolicy, clock: Clock):
        self.capability = capability
        self.policy = policy
        self.clock = clock
        self.verdicts: dict[str, DeliveryVerdict] = {}
        self.rounds = 0

    def judge(self, pairs: list[tuple[str, Any]]) -> list[DeliveryTransition]:
        """One round over (provider, DeliveryEvent) pairs; the only writer of the verdicts."""
        verdicts, transitions = judge(outcomes_by_provider(pairs), self.verdicts, self.clock.time(), self.policy)
        self.verdicts = verdicts
        self.rounds += 1
        return transitions

    async def run(self, store: Callable[[], Any], publish: Callable[[list[DeliveryTransition]], None],
                  also: Callable[[list[Any]], Awaitable[Any]] | None = None) -> None:
        """`also`: given each round's stored events after judging (the drop fallback)."""
        while True:
            await self.clock.sleep(self.policy.interval_s)
            try:
                since = self.clock.time() - self.policy.window_s
                stored = await store().events_since(self.capability, since)
                transitions = self.judge([(s.provider, s.event) for s in stored])
                for t in transitions:
                    log.warning("%s: %s %s -> %s: %s", self.capability, t.provider, t.before, t.after, t.evidence)
                if transitions:
                    publish(transitions)
                if also is not None:
                    await also(stored)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad round must not end the judging
                log.exception("%s: delivery health round failed", self.capability)

    def ejections(self, now: float) -> dict[str, EjectionState]:
        return {name: EjectionState(ejected_at=v.since, ejected_until=v.ejected_until)
                for name, v in self.verdicts.items()
                if v.verdict == "ejected" and v.ejected_until is not None and now < v.ejected_until}

    def annotate(self, status: CapabilityStatus) -> CapabilityStatus:
        now = self.clock.time()

        def one(p: ProviderStatus) -> ProviderStatus:
            v = self.verdicts.get(p.name)
            if v is None or v.verdict == "healthy":
                return p
            changes: dict[str, Any] = {"delivery": f"{v.verdict}: {v.evidence}"}
            if v.verdict == "ejected" and v.ejected_until is not None and now < v.ejected_until \
                    and p.ejected_until is None:
                changes.update(ejected_until=v.ejected_until, ejection_reason=EJECT_REASON)
            return msgspec.structs.replace(p, **changes)

        return msgspec.structs.replace(status, providers=[one(p) for p in status.providers])
