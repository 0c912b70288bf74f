"""The gateway's spans. A request's trace:

    <capability>.<method>           SERVER, the router (its parent: the caller's span, if any)
      ├─ store claim / store record   INTERNAL, one per store round trip (a batch is one)
      ├─ attempt <provider>           CLIENT, one per provider attempt (hedges and rounds too)
      │    └─ provider <provider>     SERVER, in the provider actor's process, around the adapter
      └─ events: provider.skipped     with the skip's typed reason

A direct read (the client straight to a provider, actors/client/direct.py)
is one span, `provider <provider>` with `aicmo.direct`, in the provider's
process: the trace's root, or a child of the caller's span.

Attribute names follow OpenTelemetry's semantic conventions where one exists
(`error.type`, `http.request.resend_count`); the gateway's own are `aicmo.*`.
Callers hold a `Tracing` (on) or NO_TRACING (off): off, a request carries no
span object at all and pays one `is None` test per attempt.
"""

from __future__ import annotations

import hashlib
import time
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


class _Sink:
    """What a span needs of the SDK, taken once per Tracing: the processors
    that receive ended spans (batch export), the root's sampler, the ids, the
    resource. Spans are recorded here, not by the SDK's Span: that one
    validates every attribute under a lock and asks the sampler again for
    each child, which on the router's path cost four times what this does
    (bench/tracing.py's note); what reaches the processors is the SDK's own
    ReadableSpan, so exporters see no difference."""

    def __init__(self, tracer: Any, scope: str):
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        trace = _ot()
        self.trace = trace
        self.processor = tracer.span_processor
        self.sampler = tracer.sampler
        self.resource = tracer.resource
        self.scope = InstrumentationScope(scope)
        self.new_span_id = tracer.id_generator.generate_span_id
        self.new_trace_id = tracer.id_generator.generate_trace_id
        self.readable = ReadableSpan
        self.event = Event
        self.sampled = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        self.unsampled = trace.TraceFlags(trace.TraceFlags.DEFAULT)
        self.unset = trace.Status(trace.StatusCode.UNSET)
        self.kinds = trace.SpanKind

    def context(self, trace_id: int, flags: Any, trace_state: Any = None) -> Any:
        return self.trace.SpanContext(trace_id, self.new_span_id(), is_remote=False, trace_flags=flags,
                                      trace_state=trace_state)


class _Span:
    """One recorded span: plain fields until it ends, then one ReadableSpan
    handed to the processors. Used from one event loop: no lock."""

    __slots__ = ("_sink", "_name", "_context", "_parent", "_kind", "_start", "_attributes", "_events", "_links",
                 "_status", "_ended")

    def __init__(self, sink: _Sink, name: str, context: Any, parent: Any, kind: Any, attributes: dict[str, Any],
                 links: Sequence[Any] = ()):
        self._sink = sink
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes = attributes
        self._events: list[Any] = []
        self._links = list(links)
        self._status = sink.unset
        self._ended = False
        self._start = time.time_ns()

    def get_span_context(self) -> Any:
        return self._context

    def is_recording(self) -> bool:
        return not self._ended

    # Once ended, the export thread reads these: nothing changes them after.
    def set_attribute(self, name: str, value: Any) -> None:
        if not self._ended:
            self._attributes[name] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        if not self._ended:
            self._attributes.update(attributes)

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        if not self._ended:
            self._events.append(self._sink.event(name, attributes))

    def add_link(self, context: Any, attributes: dict[str, Any] | None = None) -> None:
        if not self._ended:
            self._links.append(self._sink.trace.Link(context, attributes))

    def set_status(self, status: Any) -> None:
        if not self._ended:
            self._status = status

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        sink = self._sink
        sink.processor.on_end(sink.readable(
            self._name, self._context, self._parent, sink.resource, self._attributes, self._events, self._links,
            self._kind, None, self._status, self._start, time.time_ns(), sink.scope))


class _Unsampled:
    """A span the root's sampler left out: it only carries ids on (so the
    context still travels, unsampled) and records nothing."""

    __slots__ = ("_context",)

    def __init__(self, context: Any):
        self._context = context

    def get_span_context(self) -> Any:
        return self._context

    def is_recording(self) -> bool:
        return False

    def set_attribute(self, name: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        pass

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        pass

    def add_link(self, context: Any, attributes: dict[str, Any] | None = None) -> None:
        pass

    def set_status(self, status: Any) -> None:
        pass

    def end(self) -> None:
        pass


def _remote(traceparent: str | None) -> Any:
    """The remote SpanContext `traceparent` names; None for none to follow."""
    parent = parse_traceparent(traceparent)
    if parent is None:
        return None
    trace = _ot()
    return trace.SpanContext(trace_id=int(parent.trace_id, 16), span_id=int(parent.span_id, 16), is_remote=True,
                             trace_flags=trace.TraceFlags(1 if parent.sampled else 0))


def _traceparent(span: Any) -> str:
    ctx = span.get_span_context()
    return format_traceparent(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", bool(ctx.trace_flags & 1))


def _link(traceparent: str | None) -> Any:
    ctx = _remote(traceparent)
    return None if ctx is None else _ot().Link(ctx)


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
        self.recording = span.is_recording()
        self.trace_id: str | None = f"{ctx.trace_id:032x}" if self.recording else None
        self.span_id: str | None = f"{ctx.span_id:016x}" if self.recording else None
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
        if self.recording:
            self.span.add_event("provider.skipped", {"aicmo.provider": provider, "aicmo.skip.reason": str(reason),
                                                     "aicmo.skip.detail": detail[:200]})

    def end(self, result: Any) -> None:
        span = self.span
        if not self.recording:
            return
        attributes: dict[str, Any] = {
            "aicmo.outcome": "ok" if result.ok else str(result.error.kind if result.error else "failed"),
            "aicmo.replayed": bool(result.replayed), "aicmo.attempts": len(result.attempts)}
        if result.provider:
            attributes["aicmo.provider"] = result.provider
        if result.outbox_id is not None:
            attributes["aicmo.outbox_id"] = result.outbox_id
        span.set_attributes(attributes)
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
        if not span.is_recording():
            return
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
    """Makes the gateway's spans for one OpenTelemetry SDK tracer (its
    sampler, ids, resource and processors). The sampler decides once, at the
    request's root (ParentBased: a caller's choice is kept); children of a
    sampled root are recorded without asking again, children of an unsampled
    one cost an id."""

    on = True

    def __init__(self, tracer: Any, scope: str = "aicmo-gateway"):
        self._sink = _Sink(tracer, scope)

    def _child(self, request: RequestSpan, name: str, kind: Any, attributes: dict[str, Any]) -> Any:
        sink = self._sink
        root = request.span.get_span_context()
        if not request.recording:
            return _Unsampled(sink.context(root.trace_id, sink.unsampled, root.trace_state))
        return _Span(sink, name, sink.context(root.trace_id, root.trace_flags, root.trace_state), root, kind,
                     attributes)

    def request(self, capability: str, method: str, traceparent: str | None, *, request_id: str, key: str | None,
                deadline_s: float | None, dry_run: bool, links: Sequence[str] = ()) -> RequestSpan:
        attributes: dict[str, Any] = {"aicmo.capability": capability, "aicmo.method": method,
                                      "aicmo.request_id": request_id, "aicmo.dry_run": dry_run}
        if key is not None:
            attributes["aicmo.idempotency_key.sha256"] = key_hash(key)
        if deadline_s is not None:
            attributes["aicmo.deadline_s"] = float(deadline_s)
        found = [link for link in map(_link, links) if link is not None]
        return RequestSpan(self._root(f"{capability}.{method}", _remote(traceparent), attributes, found))

    def _root(self, name: str, parent: Any, attributes: dict[str, Any], links: Sequence[Any] = ()) -> Any:
        """A request's first span here, SERVER: the sampler decides, once, for it and its children."""
        sink = self._sink
        trace_id = parent.trace_id if parent is not None else sink.new_trace_id()
        parent_context = None if parent is None else sink.trace.set_span_in_context(sink.trace.NonRecordingSpan(parent))
        decision = sink.sampler.should_sample(parent_context, trace_id, name, sink.kinds.SERVER, attributes, links)
        if not decision.decision.is_recording():
            return _Unsampled(sink.context(trace_id, sink.unsampled, decision.trace_state))
        if decision.attributes:
            attributes.update(decision.attributes)
        flags = sink.sampled if decision.decision.is_sampled() else sink.unsampled
        return _Span(sink, name, sink.context(trace_id, flags, decision.trace_state), parent, sink.kinds.SERVER,
                     attributes, links)

    def attempt(self, request: RequestSpan, provider: str, *, round_: int, hedged: bool) -> AttemptSpan:
        number = request.attempts = request.attempts + 1
        return AttemptSpan(self._child(request, f"attempt {provider}", self._sink.kinds.CLIENT, {
            "aicmo.provider": provider, "aicmo.round": round_, "aicmo.attempt": number,
            "http.request.resend_count": number - 1, "aicmo.hedged": hedged}))

    @contextmanager
    def store(self, request: RequestSpan | None, operation: str) -> Iterator[Any]:
        """One store round trip (its statements, batched, are one span)."""
        if request is None or not request.recording:
            yield None
            return
        span = self._child(request, f"store {operation}", self._sink.kinds.INTERNAL,
                           {"aicmo.store.operation": operation})
        try:
            yield span
        except BaseException as exc:
            _error(span, type(exc).__name__, str(exc))
            raise
        finally:
            span.end()

    def provider_call(self, traceparent: str | None, provider: str, capability: str, method: str) -> Any:
        """The provider actor's span around one attempt; None when the router
        sent no context or one it did not sample (nothing to record)."""
        parent = _remote(traceparent)
        if parent is None or not parent.trace_flags.sampled:
            return None
        sink = self._sink
        return _Span(sink, f"provider {provider}", sink.context(parent.trace_id, parent.trace_flags), parent,
                     sink.kinds.SERVER, {"aicmo.provider": provider, "aicmo.capability": capability,
                                         "aicmo.method": method})

    def direct_call(self, traceparent: str | None, provider: str, capability: str, method: str,
                    request_id: str) -> Any:
        """The provider actor's span of a call the client sent it directly
        (no router): the root of the request's trace, or a child of the
        caller's span when the client had one; None when not sampled."""
        span = self._root(f"provider {provider}", _remote(traceparent), {
            "aicmo.provider": provider, "aicmo.capability": capability, "aicmo.method": method,
            "aicmo.request_id": request_id, "aicmo.direct": True})
        return span if span.is_recording() else None

    @staticmethod
    def ids(span: Any) -> tuple[str, str]:
        """A span's trace and span ids, as InvokeResult carries them."""
        ctx = span.get_span_context()
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"

    @staticmethod
    def provider_end(span: Any, reply: Any) -> None:
        attributes: dict[str, Any] = {"aicmo.ok": bool(reply.ok)}
        if reply.paced_until is not None:
            attributes["aicmo.paced"] = True
        span.set_attributes(attributes)
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
