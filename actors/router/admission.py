"""The router's side of admission (actors/policy/admission.py): it measures
how far behind its event loop runs as each request (or batch) arrives, and
answers a request it refuses at once, before anything is claimed or sent.

The lag is the time one turn of the loop takes to come back to the arriving
request (`asyncio.sleep(0)`): the ready tasks ahead of it, that is the
router's queue, plus any time the process waited for a CPU. It is read from
the system's monotonic clock, not `loop.time()`: under Ray the loop is
uvloop's, whose time is libuv's, in whole milliseconds and cached once per
turn, so most turns read a lag of 0 and a target under a few milliseconds
could never be seen standing."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from actors.errors import ErrorKind
from actors.messages import ErrorInfo, InvokeResult
from actors.policy.admission import Admission, AdmissionPolicy, Overloaded
from actors.specs import AdmissionSpec

__all__ = ["RouterAdmission", "options_of"]


class RouterAdmission:
    def __init__(self, spec: AdmissionSpec, name: str):
        self.name = name   # router:<capability>, or a replica's name: what the refusal names
        self.policy = AdmissionPolicy(enabled=spec.enabled, target_s=spec.target_lag_ms / 1000,
                                      interval_s=spec.interval_s, min_in_flight=spec.min_in_flight)
        self.admission = Admission(self.policy)

    async def arrived(self, in_flight: int) -> Overloaded | None:
        """None: serve it; else why it is refused."""
        if not self.policy.enabled:
            return None
        asked = time.monotonic()
        await asyncio.sleep(0)
        now = time.monotonic()
        return self.admission.arrived(now, now - asked, in_flight)

    def overloaded(self) -> bool:
        return self.admission.overloaded(time.monotonic())

    @property
    def refused(self) -> int:
        return self.admission.refused

    def refusal(self, why: Overloaded, capability: str, method: Any, idempotency_key: str | None,
                dry_run: bool | None) -> InvokeResult:
        """The answer to a refused request: rate_limited, with when to send it again."""
        again = (f"send it again after {why.retry_after_s:g} s with the same idempotency_key"
                 if idempotency_key else f"send it again after {why.retry_after_s:g} s")
        message = (f"{self.name} is overloaded: its event loop has run {why.lag_s * 1000:.0f} ms late "
                   f"(over {self.policy.target_s * 1000:g} ms for {why.since_s:.1f} s) with {why.in_flight} "
                   f"requests in flight. Refused before anything was claimed or sent; {again}. If it lasts, "
                   "the capability needs more router replicas (policy.routing.replicas) or machines")
        return InvokeResult(ok=False, capability=capability, method=method if isinstance(method, str) else "",
                            idempotency_key=idempotency_key, dry_run=bool(dry_run), request_id=uuid.uuid4().hex,
                            error=ErrorInfo(kind=ErrorKind.RATE_LIMITED, message=message,
                                            retry_after_s=why.retry_after_s))


def options_of(item: Any) -> tuple[Any, str | None, bool | None]:
    """An `invoke_many` item's method, idempotency key and dry_run, as far as
    it has them: a refused batch is answered item by item, unchecked."""
    method, options = (item[0], item[2] if len(item) > 2 else None) if isinstance(item, (list, tuple)) and item else \
        (None, None)
    options = options if isinstance(options, dict) else {}
    key = options.get("idempotency_key")
    return method, key if isinstance(key, str) else None, options.get("dry_run")
