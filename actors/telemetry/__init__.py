"""Traces (issue 23): one OpenTelemetry trace per request, across the actors.

The W3C trace context travels in our own messages (a `traceparent` string:
the client's call to the router, CallContext to the provider actor), not
through Ray's tracing hook. Off unless `telemetry.traces` (or the standard
OTEL_EXPORTER_OTLP_* variables at `up`) names an endpoint; off, nothing of
the SDK is imported and every call here is a constant's.

- context.py: the traceparent string, parsed and made, without the SDK;
- setup.py: one TracerProvider per process (batch export over OTLP/HTTP);
- spans.py: the gateway's spans (request, attempt, provider call, store).
"""

from __future__ import annotations

from actors.telemetry.context import current_traceparent, parse_traceparent
from actors.telemetry.spans import NO_TRACING, Tracing, tracing_for

__all__ = ["NO_TRACING", "Tracing", "current_traceparent", "parse_traceparent", "tracing_for"]
