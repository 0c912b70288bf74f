"""A live fault at a provider actor (`aicmo-gateway chaos inject`): held in
the actor's memory and applied to each attempt before the concurrency
limit and the adapter (policy: actors/policy/chaos/faults.py).

    ProviderCore._attempt --before(timeout_s)--> pass: nothing done
                                                 delay: slept, the adapter gets the time left
                                                 fail: slept (if delayed), the kind's ProviderError raised

An injected failure never reaches the adapter, so nothing was sent: its
error says `maybe_delivered=False` (the journal marks the send `failed`, the
router never parks it as outcome_unknown) and carries `injected`. A delay
longer than the attempt's time becomes a timeout at the attempt's end, as a
slow provider's would, and nothing was sent either. The fault ends by
itself at its expiry (dropped on the next look); a restarted actor starts
with none, so restarting the provider actor ends a fault at once.

The random source is a `random.Random` of this actor (`rng`), the clock
(wall time for expiry, its sleep for the delay) is the core's, and an
applied fault is told to the core's listeners (`on_fault_applied`, the
chaos counter): tests set all three.
"""

from __future__ import annotations

import logging
import random
from typing import NamedTuple

from actors.clock import SYSTEM_CLOCK, Clock
from actors.errors import ERROR_BY_KIND, ErrorKind, ProviderError
from actors.messages import FaultStatus
from actors.policy.chaos.faults import ChaosAction, Fault, apply
from actors.provider.listener import Listeners, ProviderListener

__all__ = ["NOTHING", "Acted", "LiveFault", "injected"]

log = logging.getLogger("aicmo.chaos")


class Acted(NamedTuple):
    """What a live fault did to one attempt that went ahead."""

    injected: bool = False
    delay_s: float = 0.0


NOTHING = Acted()


class LiveFault:
    """The one fault of one provider actor, or none."""

    def __init__(self, who: str, clock: Clock = SYSTEM_CLOCK, listener: ProviderListener | None = None,
                 rng: random.Random | None = None):
        """`listener` hears each fault applied; ProviderCore gives its
        `Listeners`, which keep a failing observer from failing the call."""
        self.who = who
        self.fault: Fault | None = None
        self.rng = rng or random.Random()
        self._clock = clock
        self._listener = listener or Listeners()

    def set(self, fault: Fault | None) -> Fault | None:
        """Sets (or, with None, clears) the fault; returns the active one it replaced."""
        old = self.current()
        self.fault = fault
        if fault is not None:
            log.warning("%s: live fault %s injected by %s (fail %.0f%% %s, +%.0f ms) for %.0f s", self.who, fault.id,
                        fault.injected_by, fault.fail_rate * 100, fault.error, fault.latency_ms,
                        fault.expires_at - self._clock.time())
        elif old is not None:
            log.warning("%s: live fault %s cleared", self.who, old.id)
        return old

    def current(self) -> Fault | None:
        """The active fault; one past its expiry is dropped here."""
        if self.fault is not None and self.fault.expired(self._clock.time()):
            log.warning("%s: live fault %s expired", self.who, self.fault.id)
            self.fault = None
        return self.fault

    def shown(self) -> FaultStatus | None:
        f = self.current()
        if f is None:
            return None
        return FaultStatus(id=f.id, fail_rate=f.fail_rate, error=f.error,
                           latency_ms=f.latency_ms, expires_at=f.expires_at, injected_by=f.injected_by)

    async def before(self, timeout_s: float) -> Acted:
        """Applies the fault to one attempt of `timeout_s`: returns what it
        did (the delay slept), or raises the injected failure."""
        if self.fault is None:
            return NOTHING
        d = apply(self.fault, self.rng, self._clock.time())
        if d.expired:
            self.current()
            return NOTHING
        if d.action is ChaosAction.PASS:
            return NOTHING
        delay_s = d.delay_ms / 1000
        if delay_s >= timeout_s:  # past the attempt's time: a timeout, as a slow provider's would be
            self._listener.on_fault_applied(str(d.action))
            await self._clock.sleep(timeout_s)
            raise self._failure(ErrorKind.TIMEOUT, f"no answer within the attempt's {timeout_s:g}s (injected "
                                f"fault {d.fault_id}: +{d.delay_ms:.0f} ms)", None)
        self._listener.on_fault_applied(str(d.action))
        if delay_s > 0:
            await self._clock.sleep(delay_s)
        if d.action is ChaosAction.FAIL:
            assert d.error is not None
            raise self._failure(d.error, f"injected fault {d.fault_id}: {d.error}", d.retry_after_s)
        return Acted(injected=True, delay_s=delay_s)

    @staticmethod
    def _failure(kind: ErrorKind, message: str, retry_after_s: float | None) -> ProviderError:
        error = ERROR_BY_KIND.get(kind, ProviderError)(message, retry_after_s=retry_after_s, maybe_delivered=False)
        error.kind = kind  # crashed has no class of its own
        error.injected = True  # type: ignore[attr-defined] - read by ProviderCore._attempt
        return error


def injected(exc: BaseException, acted: Acted) -> bool:
    """Whether a live fault acted on an attempt that raised `exc`."""
    return bool(getattr(exc, "injected", False)) or acted.injected
