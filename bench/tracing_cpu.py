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
across builds (`main(before=...)` also measures "off" of the build in
that tree: bench/tracing.py's baseline). Each figure in a fresh process
(warmed with 200 requests first). What Ray adds per request (its messaging and scheduling,
the same on and off) is absent, so on ÷ off here is an upper bound of the
ratio through the actors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REQUESTS = 1500
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


def _tracing(on: bool, kept: list[Any] | None = None) -> tuple[Any, Any]:
    """Off: (None, None). On: the actors' pipeline; with `kept`, ended spans
    are put there, in the caller's thread, to be encoded by the caller
    (counting calls: the export thread's are not counted)."""
    if not on:
        return None, None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (BatchSpanProcessor, SimpleSpanProcessor, SpanExporter,
                                                SpanExportResult)
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from actors.telemetry import Tracing
    from actors.telemetry.setup import SERVICE_NAME, _resource
    from actors.telemetry.wire import encode_request

    class Encoding(SpanExporter):
        def export(self, spans: Any) -> Any:
            if kept is not None:
                kept.extend(spans)
            else:
                encode_request(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)),
                              resource=_resource(Resource.create({"service.name": SERVICE_NAME})))
    provider.add_span_processor(SimpleSpanProcessor(Encoding()) if kept is not None else
                                BatchSpanProcessor(Encoding(), max_queue_size=4096, schedule_delay_millis=500))
    return Tracing(provider.get_tracer("aicmo-gateway")), provider


def _harness(on: bool, requests: int, kept: list[Any] | None = None) -> tuple[Any, Any]:
    from tests.unit.harness import Harness

    tracing, provider = _tracing(on, kept)
    # Off, no `tracing` keyword: the build before issue 23 (run by `before`) has none.
    return Harness({"sim": [{"message_id": "m"}] * (requests + 1)}, **({"tracing": tracing} if on else {})), provider


async def _sends(h: Any, prefix: str, requests: int) -> None:
    for i in range(requests):
        assert (await h.router.invoke("send_email", EMAIL, idempotency_key=f"{prefix}-{i}")).ok


def cpu_us_per_request(on: bool, prefix: str, requests: int = REQUESTS) -> float:
    h, provider = _harness(on, requests)
    started = time.process_time()
    asyncio.run(_sends(h, prefix, requests))
    if provider is not None:
        provider.force_flush()
    spent = time.process_time() - started
    if provider is not None:
        provider.shutdown()
    return spent / requests * 1e6


def calls_per_request(on: bool, requests: int = 300) -> float:
    """Python function calls per request (cProfile's count, the request's
    thread; spans encoded in it, in batches as the export thread does): work
    that no load on the machine changes."""
    import cProfile
    import pstats

    kept: list[Any] = []
    h, provider = _harness(on, requests + 50, kept)
    asyncio.run(_sends(h, "warm", 50))  # first-use work (imports, caches) is not a request's
    kept.clear()
    profile = cProfile.Profile()
    profile.enable()
    asyncio.run(_sends(h, "counted", requests))
    if kept:
        from actors.telemetry.wire import encode_request

        for i in range(0, len(kept), 512):  # the batch processor's default batch
            encode_request(kept[i:i + 512])
    profile.disable()
    if provider is not None:
        provider.shutdown()
    return pstats.Stats(profile).total_calls / requests


def in_process_of_its_own(tree: Path, what: str, on: bool) -> float:
    """`cpu_us_per_request(on)` (`what` "cpu") or `calls_per_request(on)`
    ("calls") with the build in `tree` (its actors and tests.unit.harness),
    in a fresh process: this file run by path, so that no figure inherits
    another's garbage or threads."""
    runner = f"import runpy; runpy.run_path({str(Path(__file__))!r}, run_name='__main__')"
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", runner, what, "on" if on else "off"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=600, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(rounds: int = 3, before: Path | None = None) -> dict[str, dict[str, list[float]]]:
    """{"cpu": rounds of off and on (this build), rotating, "calls": one
    count each}; with `before` (the tree of another build), its off too."""
    here = Path(__file__).resolve().parents[1]
    variants = {"off": (here, False), "on": (here, True), **({"before": (before, False)} if before else {})}
    cpu: dict[str, list[float]] = {label: [] for label in variants}
    labels = list(variants)
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            tree, on = variants[label]
            cpu[label].append(in_process_of_its_own(tree, "cpu", on))
    calls = {label: [in_process_of_its_own(tree, "calls", on)] for label, (tree, on) in variants.items()}
    return {"cpu": cpu, "calls": calls}


if __name__ == "__main__":
    logging.getLogger("aicmo").setLevel(logging.ERROR)  # the harness's health lines
    if len(sys.argv) == 3 and sys.argv[1] in ("cpu", "calls") and sys.argv[2] in ("on", "off"):
        on = sys.argv[2] == "on"
        if sys.argv[1] == "cpu":
            cpu_us_per_request(on, "warm", 200)
            print(cpu_us_per_request(on, "measured"))
        else:
            print(calls_per_request(on))
    else:
        print(main())
