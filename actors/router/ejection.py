"""A router's outlier ejection (policy/outliers: detection, demotion), wired:
the one owner of its capability's outcome windows and ejection states.

- `observe`: each attempt's outcome becomes a live sample (`sample_of`
  decides what counts; a cancelled hedge never gets here, an unreachable
  actor is not passed, a replayed or dry-run reply says nothing);
- `probes`: the latest health-check probes a provider actor reports in its
  `ProviderStatus.probe_samples`, each taken once;
- `sweep`: the only writer of the `EjectionState`s (through `outlier.sweep`),
  run every `interval_s` by `run`, the router actor's background task;
- `states` and `policy`: what the plan reads (planner.py hands them to the
  plan's `outlier_demotion` step, policy/planning.py: the ejected and those
  on probation tried after the others, never dropped, ignored in panic);
- `annotate`: ejections, probation and panic in the capability's status.

Only real providers are judged: not the outbox, nor one that delivers
nothing (noop). Ejections are not persisted: a restarted router finds the
outlier again within a window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from actors.clock import Clock
from actors.messages import CallReply, CapabilityStatus, ProviderStatus
from actors.policy.candidate import Candidate
from actors.policy.outliers.demotion import unavailable
from actors.policy.outliers.detection import (
    EjectionState,
    OutcomeWindow,
    OutlierEvent,
    ProviderView,
    Sample,
    Source,
    sample_of,
    sweep,
)
from actors.specs import CapabilitySpec

__all__ = ["Outliers"]

log = logging.getLogger("aicmo.outliers")


class Outliers:
    def __init__(self, spec: CapabilitySpec, clock: Clock):
        self.capability = spec.capability
        self.policy = spec.outlier
        self.clock = clock
        names = [p.name for p in spec.providers if not p.last_resort and p.delivers]
        self.windows = {n: OutcomeWindow() for n in names}
        self.states = {n: EjectionState() for n in names}
        self.panic = False
        self.sweeps = 0
        self._probe_seen: dict[str, float] = {}
        self._probe_kinds = {p.name: p.adapter for p in spec.providers}

    # --- samples ---------------------------------------------------------------
    def observe(self, name: str, reply: CallReply, dry_run: bool) -> None:
        """An attempt's reply from the provider actor (not an unreachable actor)."""
        window = self.windows.get(name)
        if window is None or reply.replayed or dry_run:
            return
        s = sample_of(at=self.clock.time(), ok=reply.ok, latency_ms=reply.latency_ms, error_kind=reply.error_kind)
        if s is not None:
            window.add(s)

    def probes(self, name: str, samples: Sequence[Sample]) -> int:
        """Adds the probes newer than the last one taken; returns how many."""
        window = self.windows.get(name)
        if window is None:
            return 0
        seen = self._probe_seen.get(name, float("-inf"))
        fresh = [s for s in samples if s.source is Source.PROBE and s.at > seen]
        for s in sorted(fresh, key=lambda s: s.at):
            window.add(s)
        if fresh:
            self._probe_seen[name] = max(s.at for s in fresh)
        return len(fresh)

    # --- the sweep (the only writer of the states) ---------------------------------
    def sweep(self, candidates: Sequence[Candidate]) -> list[OutlierEvent]:
        now = self.clock.time()
        out = unavailable(candidates, now)
        views = [ProviderView(name=n, samples=w.samples(), state=self.states[n], available=n not in out,
                              probe_kind=self._probe_kinds[n]) for n, w in self.windows.items()]
        result = sweep(views, now, self.policy, was_panic=self.panic)
        self.states.update(result.states)
        self.panic = result.panic
        self.sweeps += 1
        return list(result.events)

    async def run(self, candidates: Callable[[], Sequence[Candidate]],
                  fetch: Callable[[str], Awaitable[ProviderStatus]],
                  publish: Callable[[list[OutlierEvent]], None]) -> None:
        """The router's background task: every interval_s, take the providers'
        latest probes (`fetch`: a provider's status), sweep, publish the events."""
        while True:
            await self.clock.sleep(self.policy.interval_s)
            try:
                statuses = await asyncio.gather(*(fetch(n) for n in self.windows), return_exceptions=True)
                for name, status in zip(self.windows, statuses, strict=True):
                    if isinstance(status, ProviderStatus):
                        self.probes(name, status.probe_samples)
                events = self.sweep(candidates())
                for e in events:
                    log.warning("%s: outlier %s", self.capability, e)
                publish(events)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad round must not end ejection
                log.exception("%s: outlier sweep failed", self.capability)

    # --- what the status sees -------------------------------------------------------------
    def ejected(self, now: float) -> dict[str, bool]:
        return {n: st.ejected(now) for n, st in self.states.items()}

    def annotate(self, status: CapabilityStatus) -> CapabilityStatus:
        now = self.clock.time()

        def one(p: ProviderStatus) -> ProviderStatus:
            st = self.states.get(p.name)
            if st is None:
                return p
            on = st.ejected(now)
            # an ejection over since the last sweep is on probation already for a request (demotion.who_to_demote)
            probation = not on and (st.on_probation or (st.ejected_until is not None and self.policy.probation))
            return msgspec.structs.replace(p, ejected_until=st.ejected_until if on else None,
                                           ejection_reason=str(st.reason) if (on or probation) and st.reason else None,
                                           ejections=st.ejections, on_probation=probation)

        return msgspec.structs.replace(status, providers=[one(p) for p in status.providers], panic=self.panic)
