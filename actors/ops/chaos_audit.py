"""Live faults in a capability's audit log, written by its router (one
writer per audit file). The supervisor tells the router of each fault it
injected or cleared (`RouterActor.chaos_event`); the router keeps them in a
`ChaosBook` and, on its ops round, writes an `expired` record for each one
past its time (the provider actor drops it by itself at the same time).

    {"type": "chaos", "event": "injected" | "cleared" | "expired", "at": ..., "time": "...Z",
     "capability": "email_sending", "provider": "resend", "by": "ann@ops-1" (null: expired by itself),
     "fault": {"id": ..., "fail_rate": 1.0, "error": "transient", "latency_ms": 0.0, "expires_at": ..., ...},
     "replaced": null | "<id of the fault it replaced>"}
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from actors.ops.audit import AuditLog, _iso
from actors.policy.chaos.faults import ChaosBook, ChaosEvent, Fault, FaultCleared, FaultInjected, expire, inject

__all__ = ["ChaosAudit", "chaos_record"]

log = logging.getLogger("aicmo.chaos")


def chaos_record(event: ChaosEvent) -> dict[str, Any]:
    """One chaos event as the audit log stores it."""
    f = event.fault
    if isinstance(event, FaultInjected):
        name, at, by = "injected", f.injected_at, f.injected_by
    elif isinstance(event, FaultCleared):
        name, at, by = "cleared", event.at, event.by
    else:
        name, at, by = "expired", event.at, None
    return {"type": "chaos", "event": name, "at": round(at, 3), "time": _iso(at), "capability": f.capability,
            "provider": f.provider, "by": by, "fault": msgspec.to_builtins(f),
            "replaced": event.replaced.id if isinstance(event, FaultInjected) and event.replaced else None}


class ChaosAudit:
    """The active faults of one capability, as its router learned them."""

    def __init__(self, audit: AuditLog | None):
        self.audit = audit
        self.book = ChaosBook()

    def note(self, event: ChaosEvent) -> None:
        if isinstance(event, FaultInjected):
            self.book, _ = inject(self.book, event.fault)
        elif isinstance(event, FaultCleared):
            kept = {k: f for k, f in self.book.faults.items() if (k, f.id) != (event.fault.key, event.fault.id)}
            self.book = ChaosBook(kept)
        self._write(event)

    def adopt(self, fault: Fault) -> None:
        """A fault a provider actor holds that this router did not hear of
        (the router was restarted or redeployed since): its expiry is
        audited, its injection was already."""
        if fault.key not in self.book.faults:
            self.book, _ = inject(self.book, fault)

    def sweep(self, now: float) -> list[ChaosEvent]:
        """Writes an `expired` record for each fault past its time."""
        self.book, events = expire(self.book, now)
        for event in events:
            self._write(event)
        return events

    def _write(self, event: ChaosEvent) -> None:
        record = chaos_record(event)
        log.warning("chaos %s: %s on %s", record["event"], event.fault.id, event.fault.key)
        if self.audit is not None:
            self.audit.note(record)

