"""The gateway's spans. A request's trace:

    <capability>.<method>           SERVER, the router (its parent: the caller's span, if any)
      ├─ store claim / store record   INTERNAL, one per store round trip (a batch is one)
      ├─ attempt <provider>           CLIENT, one per provider attempt (hedges and rounds too)
      │    └─ provider <provider>     SERVER, in the provider actor's process, around the adapter
      └─ events: provider.skipped     with the skip's typed reason

Attribute names follow OpenTelemetry's semantic conventions where one exists
(`error.type`, `http.request.resend_count`); the gateway's own are `aicmo.*`.
Callers hold a `Tracing` (on) or NO_TRACING (off): off, a request carries no
span object at all and pays one `is None` test per attempt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from actors.telemetry.context import format_traceparent, parse_traceparent

__all__ = ["NO_TRACING", "AttemptSpan", "RequestSpan", "Tracing", "key_hash", "tracing_for"]

KEY_HASH_CHARS = 16  # a prefix of the key's SHA-256: enough to find a request, not to guess its key


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:KEY_HASH_CHARS]


def _ot() -> Any:
    from opentelemetry import trace

    return trace


def _parent(traceparent: str | None) -> Any:
    """An OpenTelemetry context whose current span is the remote parent named by `traceparent`."""
    parent = parse_traceparent(traceparent)
    if parent is None:
        return None
    trace = _ot()
    ctx = trace.SpanContext(trace_id=int(parent.trace_id, 16), span_id=int(parent.span_id, 16), is_remote=True,
                            trace_flags=trace.TraceFlags(1 if parent.sampled else 0))
    return trace.set_span_in_context(trace.NonRecordingSpan(ctx))


def _traceparent(span: Any) -> str:
    ctx = span.get_span_context()
    return format_traceparent(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", bool(ctx.trace_flags & 1))


def _link(traceparent: str | None) -> Any:
    parent = parse_traceparent(traceparent)
    if parent is None:
        return None
    trace = _ot()
    return trace.Link(trace.SpanContext(trace_id=int(parent.trace_id, 16), span_id=int(parent.span_id, 16),
                                        is_remote=True, trace_flags=trace.TraceFlags(1 if parent.sampled else 0)))


def _error(span: Any, kind: str, message: str | None) -> None:
    trace = _ot()
    span.set_attribute("error.type", kind)
    span.set_status(trace.Status(trace.StatusCode.ERROR, (message or kind)[:200]))


class RequestSpan:
    """A request's root span in the router."""

    def __init__(self, span: Any):
        self.span = span
        ctx = span.get_span_context()
        # Not traced (sampled out): no id to give the caller, but the context still travels.
        self.trace_id: str | None = f"{ctx.trace_id:032x}" if span.is_recording() else None
        self.span_id: str | None = f"{ctx.span_id:016x}" if span.is_recording() else None
        self.traceparent = _traceparent(span)
        self.attempts = 0        # attempts sent so far: the next one's number

    def set(self, name: str, value: Any) -> None:
        self.span.set_attribute(name, value)

    def link(self, trace_id: str | None, span_id: str | None) -> None:
        """A link to another trace's span (a replayed result's first request)."""
        if trace_id and span_id:
            link = _link(format_traceparent(trace_id, span_id))
            self.span.add_link(link.context, {"aicmo.link": "first_request"})

    def failed(self, exc: BaseException) -> None:
        _error(self.span, type(exc).__name__, str(exc))
        self.span.end()

    def skipped(self, provider: str, reason: Any, detail: str = "") -> None:
        self.span.add_event("provider.skipped", {"aicmo.provider": provider, "aicmo.skip.reason": str(reason),
                                                 "aicmo.skip.detail": detail[:200]})

    def end(self, result: Any) -> None:
        span = self.span
        attributes: dict[str, Any] = {
            "aicmo.outcome": "ok" if result.ok else str(result.error.kind if result.error else "failed"),
            "aicmo.replayed": bool(result.replayed), "aicmo.attempts": len(result.attempts)}
        if result.provider:
            attributes["aicmo.provider"] = result.provider
        if result.outbox_id is not None:
            attributes["aicmo.outbox_id"] = result.outbox_id
        span.set_attributes(attributes)  # one lock taken, not one per attribute
        if not result.ok and result.error is not None:
            _error(span, str(result.error.kind), result.error.message)
        span.end()


class AttemptSpan:
    """One provider attempt, as the router sends it."""

    def __init__(self, span: Any):
        self.span = span
        self.traceparent = _traceparent(span)

    def end(self, reply: Any, *, cancelled: bool = False) -> None:
        span = self.span
        attributes: dict[str, Any] = {"aicmo.ok": bool(reply.ok), "aicmo.cancelled": cancelled,
                                      "aicmo.maybe_delivered": bool(reply.maybe_delivered)}
        if reply.retry_after_s is not None:
            attributes["aicmo.retry_after_s"] = float(reply.retry_after_s)
        if reply.paced_until is not None:
            attributes["aicmo.paced"] = True
        span.set_attributes(attributes)
        if not reply.ok:
            _error(span, str(reply.error_kind or "failed"), reply.error)
        span.end()


class Tracing:
    """Makes the gateway's spans with one OpenTelemetry tracer."""

    on = True

    def __init__(self, tracer: Any):
        self.tracer = tracer
        self._kinds = _ot().SpanKind

    def request(self, capability: str, method: str, traceparent: str | None, *, request_id: str, key: str | None,
                deadline_s: float | None, dry_run: bool, links: Sequence[str] = ()) -> RequestSpan:
        attributes: dict[str, Any] = {"aicmo.capability": capability, "aicmo.method": method,
                                      "aicmo.request_id": request_id, "aicmo.dry_run": dry_run}
        if key is not None:
            attributes["aicmo.idempotency_key.sha256"] = key_hash(key)
        if deadline_s is not None:
            attributes["aicmo.deadline_s"] = float(deadline_s)
        found = [link for link in map(_link, links) if link is not None]
        span = self.tracer.start_span(f"{capability}.{method}", context=_parent(traceparent),
                                      kind=self._kinds.SERVER, attributes=attributes, links=found or None)
        return RequestSpan(span)

    def attempt(self, request: RequestSpan, provider: str, *, round_: int, hedged: bool) -> AttemptSpan:
        number = request.attempts = request.attempts + 1
        trace = _ot()
        span = self.tracer.start_span(f"attempt {provider}", context=trace.set_span_in_context(request.span),
                                      kind=self._kinds.CLIENT, attributes={
                                          "aicmo.provider": provider, "aicmo.round": round_, "aicmo.attempt": number,
                                          "http.request.resend_count": number - 1, "aicmo.hedged": hedged})
        return AttemptSpan(span)

    @contextmanager
    def store(self, request: RequestSpan | None, operation: str) -> Iterator[Any]:
        """One store round trip (its statements, batched, are one span)."""
        if request is None:
            yield None
            return
        # Not made the current span: nothing under it needs to find it, and attaching costs.
        span = self.tracer.start_span(f"store {operation}", context=_ot().set_span_in_context(request.span),
                                      kind=self._kinds.INTERNAL, attributes={"aicmo.store.operation": operation})
        try:
            yield span
        except BaseException as exc:
            _error(span, type(exc).__name__, str(exc))
            raise
        finally:
            span.end()

    def provider_call(self, traceparent: str | None, provider: str, capability: str, method: str) -> Any:
        """The provider actor's span around one attempt; None when the router sent no context."""
        parent = _parent(traceparent)
        if parent is None:
            return None
        return self.tracer.start_span(f"provider {provider}", context=parent, kind=self._kinds.SERVER, attributes={
            "aicmo.provider": provider, "aicmo.capability": capability, "aicmo.method": method})

    @staticmethod
    def provider_end(span: Any, reply: Any) -> None:
        span.set_attribute("aicmo.ok", bool(reply.ok))
        if reply.paced_until is not None:
            span.set_attribute("aicmo.paced", True)
        if not reply.ok:
            _error(span, str(reply.error_kind or "failed"), reply.error)
        span.end()


class _NoTracing:
    """Tracing off: callers test `on` (or hold None spans) and skip the rest."""

    on = False

    def store(self, request: Any, operation: str) -> Any:
        return _NULL


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_NULL = _Null()
NO_TRACING: Any = _NoTracing()


def tracing_for(spec: Any, actor: str) -> Any:
    """Tracing for an actor whose spec says `traces` (a TracesSpec or None): NO_TRACING when off."""
    if spec is None or not spec.endpoint:
        return NO_TRACING
    from actors.telemetry.setup import provider_for

    return Tracing(provider_for(spec, actor).get_tracer("aicmo-gateway"))
