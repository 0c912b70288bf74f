"""What a router does with a request's answer once it is made: stamp its
elapsed time, hand its `Decision` to the observers (the audit log, the
metrics, the hooks: actors/ops) and keep it in the recent-operations log
that `status` shows."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import msgspec

from actors.clock import Clock
from actors.messages import Decision, InvokeResult, Operation
from actors.ops.privacy import UNKNOWN_METHOD, hide_method, method_label
from actors.router.request import Request
from actors.specs import ProviderSpec

__all__ = ["Finisher", "Observer"]

log = logging.getLogger("aicmo.router")

Observer = Callable[[Decision], None]


class Finisher:
    def __init__(self, capability: str, providers: dict[str, ProviderSpec], clock: Clock, recent_operations: int,
                 count: Callable[[str], None]):
        self.capability = capability
        self.providers = providers
        self.clock = clock
        self._count = count
        # Called with every finished request's Decision (audit, metrics,
        # hooks): on the request's path, so they must only enqueue.
        self.observers: list[Observer] = []
        self.recent: deque[Operation] = deque(maxlen=recent_operations)

    def finish(self, started: float, result: InvokeResult, r: Request | None = None) -> InvokeResult:
        """The request's result with its elapsed time, handed to the observers
        and the recent-operations log. `started`: on the clock's monotonic time."""
        elapsed = round((self.clock.monotonic() - started) * 1000, 3)
        result = msgspec.structs.replace(result, elapsed_ms=elapsed)
        if result.ok and result.provider in self.providers and self.providers[result.provider].last_resort:
            self._count("queued")
        if self.observers:
            self._observe(self._decision(result, r, elapsed))
        if self.recent.maxlen:
            # `status` shows these to anyone with an API key: a method name the
            # capability does not have is the caller's text, recorded as
            # `unknown` (as the audit log and metrics do), in the error too.
            method = method_label(self.capability, result.method)
            error = result.error.message if result.error else None
            if error is not None and method == UNKNOWN_METHOD and result.method:
                error = hide_method(error, result.method)
            self.recent.append(Operation(
                at=self.clock.time(), request_id=result.request_id, method=method, ok=result.ok,
                provider=result.provider, attempts=len(result.attempts),
                error_kind=result.error.kind if result.error else None,
                error=error[:300] if error is not None else None,
                dry_run=result.dry_run, elapsed_ms=elapsed))
        return result

    def _decision(self, result: InvokeResult, r: Request | None, elapsed: float) -> Decision:
        return Decision(
            at=self.clock.time(), capability=self.capability, method=result.method, request_id=result.request_id,
            idempotency_key=result.idempotency_key, ok=result.ok, provider=result.provider,
            error_kind=result.error.kind if result.error else None,
            error=result.error.message if result.error else None, dry_run=result.dry_run,
            replayed=result.replayed, outbox_id=result.outbox_id, elapsed_ms=elapsed, attempts=result.attempts,
            candidates=r.candidates if r else [], skipped=r.skipped_details() if r else {},
            draining=r.draining if r else False, skips=result.skips, trace_id=result.trace_id)

    def _observe(self, decision: Decision) -> None:
        for observe in self.observers:
            try:
                observe(decision)
            except Exception:  # noqa: BLE001 - an observer must never break a request
                log.exception("observer %r failed", observe)
