"""What a provider actor tells the rest of the system as it happens: the
seam its observers plug into, as pybreaker's `CircuitBreakerListener`.

    ProviderCore.call, call_many --on_reply-----------> each reply a caller gets (latency histogram)
    ProviderCore.record ---------on_health_changed---> its stored health changed (router, supervisor,
                                                        gauges, on_health_change hooks)
    Spending --------------------on_quota_flip-------> its quota or balance was spent, or is back
                                 on_spend------------> a charged call's price (spend counter)
    LiveFault -------------------on_fault_applied----> a live fault acted on an attempt (chaos counter)

Listeners are given to `ProviderCore` when it is built (the actor gives its
`ProviderOps` and its `Peers`), never hooked on afterwards. They are called
on the request's path, so each only enqueues or fires and forgets; and
`Listeners`, which calls them in turn, logs what one raises and goes on: an
observer never fails a call, nor keeps the others from hearing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from actors.messages import CallReply, ProviderStatus

__all__ = ["Listeners", "ProviderListener"]

log = logging.getLogger("aicmo.provider")


@runtime_checkable
class ProviderListener(Protocol):
    def on_reply(self, reply: CallReply, dry_run: bool) -> None:
        """A call answered, as its caller gets it (replayed and refused ones too)."""

    def on_health_changed(self, status: ProviderStatus) -> None:
        """The provider's health changed state; `status` is the one after."""

    def on_quota_flip(self, status: ProviderStatus) -> None:
        """Its quota or live balance was spent, or is available again."""

    def on_spend(self, amount: float) -> None:
        """A call was charged `amount`, in the provider's currency."""

    def on_fault_applied(self, action: str) -> None:
        """A live fault acted on an attempt: `delay` or `fail`."""


class Listeners:
    """Several listeners heard as one, in order; what one raises is logged."""

    def __init__(self, listeners: Iterable[ProviderListener] = ()):
        self.listeners = tuple(listeners)

    def _each(self, event: str, *args: object) -> None:
        for listener in self.listeners:  # on every call: no closure built, nothing done when there is no listener
            try:
                getattr(listener, event)(*args)
            except Exception:  # noqa: BLE001 - an observer must never fail a call
                log.exception("%s.%s failed", type(listener).__name__, event)

    def on_reply(self, reply: CallReply, dry_run: bool) -> None:
        self._each("on_reply", reply, dry_run)

    def on_health_changed(self, status: ProviderStatus) -> None:
        self._each("on_health_changed", status)

    def on_quota_flip(self, status: ProviderStatus) -> None:
        self._each("on_quota_flip", status)

    def on_spend(self, amount: float) -> None:
        self._each("on_spend", amount)

    def on_fault_applied(self, action: str) -> None:
        self._each("on_fault_applied", action)
