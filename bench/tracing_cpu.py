"""The CPU one request costs in-process, traced or not (bench/tracing.py's
steady figure): the router core and an in-process provider core
(tests/unit/harness.py: the actors' logic without Ray), keyed sends one after
another, the process's CPU time (every thread's: the export thread's
encoding counts) divided by the requests.

"on" is the SDK pipeline the actors use (actors/telemetry/setup.py: a
BatchSpanProcessor, sampling 1.0) with an exporter that encodes each batch
to OTLP protobuf as the actors' exporter does (wire.py) and sends nothing; flushed
before the clock stops. CPU time, unlike wall-clock throughput, hardly moves
when other processes load the machine, so this ratio is what to compare
across builds; what Ray adds per request (its messaging and scheduling,
the same on and off) is absent, so on ÷ off here is an upper bound of the
ratio through the actors.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

REQUESTS = 1500
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


def _tracing(on: bool) -> tuple[Any, Any]:
    from actors.telemetry import NO_TRACING, Tracing

    if not on:
        return NO_TRACING, None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from actors.telemetry.setup import SERVICE_NAME, _resource
    from actors.telemetry.wire import encode_request

    class Encoding(SpanExporter):
        def export(self, spans: Any) -> Any:
            encode_request(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)),
                              resource=_resource(Resource.create({"service.name": SERVICE_NAME})))
    provider.add_span_processor(BatchSpanProcessor(Encoding(), max_queue_size=4096, schedule_delay_millis=500))
    return Tracing(provider.get_tracer("aicmo-gateway")), provider


def cpu_us_per_request(on: bool, prefix: str, requests: int = REQUESTS) -> float:
    from tests.unit.harness import Harness

    tracing, provider = _tracing(on)
    h = Harness({"sim": [{"message_id": "m"}] * (requests + 1)}, tracing=tracing)

    async def run() -> None:
        for i in range(requests):
            assert (await h.router.invoke("send_email", EMAIL, idempotency_key=f"{prefix}-{i}")).ok

    started = time.process_time()
    asyncio.run(run())
    if provider is not None:
        provider.force_flush()
    spent = time.process_time() - started
    if provider is not None:
        provider.shutdown()
    return spent / requests * 1e6


def main(rounds: int = 3) -> dict[str, list[float]]:
    import logging

    logging.getLogger("aicmo").setLevel(logging.WARNING)  # the harness's health lines
    out: dict[str, list[float]] = {"off": [], "on": []}
    cpu_us_per_request(False, "warm", 200)
    for r in range(rounds):
        for label in (("off", "on") if r % 2 == 0 else ("on", "off")):
            out[label].append(cpu_us_per_request(label == "on", f"{label}-{r}"))
    return out


if __name__ == "__main__":
    print(main())
