"""One TracerProvider per process and export target: spans go out in
batches from a background thread (the SDK's BatchSpanProcessor) over
OTLP/HTTP, with a short export timeout, so a slow or dead collector costs
dropped spans, never a request's time. The SDK is imported here only, when
tracing is on."""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

__all__ = ["SERVICE_NAME", "provider_for"]

log = logging.getLogger("aicmo.telemetry")

SERVICE_NAME = "aicmo-gateway"

_lock = threading.Lock()
_providers: dict[tuple[Any, ...], Any] = {}


def provider_for(spec: Any, actor: str) -> Any:
    """The process's TracerProvider for `spec`'s endpoint (an actors.specs.TracesSpec; made once).
    Not installed as OpenTelemetry's global one: the gateway's spans must not
    change what the rest of the process (a user's driver) traces."""
    key = (spec.endpoint, spec.sampling_ratio, tuple(sorted((k, v.get_secret_value()) for k, v in spec.headers.items())),
           spec.export_timeout_s, actor)
    with _lock:
        provider = _providers.get(key)
        if provider is None:
            provider = _providers[key] = _make(spec, actor)
        return provider


def _make(spec: Any, actor: str) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = _resource(Resource.create({"service.name": SERVICE_NAME, "service.instance.id": actor}))
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(spec.sampling_ratio)))
    headers = {k: v.get_secret_value() for k, v in spec.headers.items()}
    exporter = exporter_class()(endpoint=spec.endpoint, headers=headers or None, timeout=spec.export_timeout_s)
    # The queue bounds memory when the collector is gone: spans past it are dropped.
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=4096, schedule_delay_millis=500,
                                                   export_timeout_millis=int(spec.export_timeout_s * 1000)))
    atexit.register(_shutdown, provider)
    log.info("%s: traces exported to %s (sampling %g)", actor, spec.endpoint, spec.sampling_ratio)
    return provider


def exporter_class() -> Any:
    """The OTLP/HTTP exporter with our encoder (wire.py, a fifth of the
    official one's CPU per span): its transport (headers, TLS, compression,
    retries, the OTEL_EXPORTER_OTLP_* variables) is the SDK's own, reached
    through its `_client`; an exporter without one (another SDK version)
    exports as it always does (test_tracing checks that this one has it)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    from actors.telemetry.wire import encode_request

    class Exporter(OTLPSpanExporter):
        def export(self, spans: Any) -> Any:
            client = getattr(self, "_client", None)
            if self._shutdown or not callable(getattr(client, "export", None)):
                return super().export(spans)
            try:
                data = encode_request(spans)
            except Exception:  # noqa: BLE001 - an attribute our encoder does not know: the SDK's then
                log.debug("spans encoded by the SDK's encoder", exc_info=True)
                return super().export(spans)
            result = client.export(data)
            return SpanExportResult.SUCCESS if getattr(result, "success", False) else SpanExportResult.FAILURE

    return Exporter


def _resource(made: Any) -> Any:
    """`made`, with its hash computed once: the exporter groups every span
    by its resource, and Resource hashes by dumping its attributes to JSON,
    a sixth of the encoding's cost per span (bench/tracing.py's note)."""
    from opentelemetry.sdk.resources import Resource

    class _Fixed(Resource):
        def __init__(self, attributes: Any, schema_url: str | None = None):
            super().__init__(attributes, schema_url)
            self._hash = Resource.__hash__(self)

        def __hash__(self) -> int:
            return self._hash

        __eq__ = Resource.__eq__

    return _Fixed(made.attributes, made.schema_url)


def _shutdown(provider: Any) -> None:
    try:
        provider.shutdown()
    except Exception:  # noqa: BLE001 - exiting: nothing left to tell
        pass


def flush(timeout_s: float = 5.0) -> bool:
    """Export what is buffered now (tests, shutdown)."""
    with _lock:
        providers = list(_providers.values())
    return all(p.force_flush(int(timeout_s * 1000)) for p in providers)
