"""Traces (issue 23): what tracing costs the router, on ÷ off, in one run.

Two gateways on one local Ray, alike but for `telemetry.traces`: "off" (no
endpoint: no span, no SDK on the request's path) and "on" (sampling 1.0,
exporting over OTLP/HTTP to a collector on loopback, in a process of its
own: tests/support/otlp.py, which decodes every export). Per round, each:

1. **p50 of one call** (sequential keyed sends through the client: the
   router's root span, its store spans, an attempt span, the provider's span);
2. **throughput**, keyed sends pipelined through the client (64 in flight).

Variants alternate in rounds (bench/common.py) so drift hits both alike.
Targets: p50 on ÷ off ≤ 1.10, throughput on ÷ off ≥ 0.90. The issue's third
figure, off ÷ the build before it (≤ 1.02), needs that build: it is not
measured here (the off path imports nothing of the SDK: see the note).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.common import gateway, local_ray, median, paired_ratio, simulated, target, write_results

SEQUENTIAL = 200
PIPELINED = 600
IN_FLIGHT = 64
ROUNDS = 3
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}
VARIANTS = ("off", "on")


def capabilities() -> dict[str, Any]:
    return {"email_sending": {"providers": [simulated("sim", latency_ms=3, latency_jitter_ms=1)]}}


def measure(namespace: str, prefix: str) -> dict[str, float]:
    from actors.client import Gateway

    gw = Gateway(namespace)
    latencies = []
    for i in range(SEQUENTIAL):
        t = time.perf_counter()
        assert gw.invoke("email_sending", "send_email", {**EMAIL, "subject": f"{prefix}-s{i}"},
                         idempotency_key=f"{prefix}-s{i}").ok
        latencies.append((time.perf_counter() - t) * 1000)

    async def pipelined() -> float:
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> bool:
            async with sem:
                res = await gw.invoke_async("email_sending", "send_email", {**EMAIL, "subject": f"{prefix}-t{i}"},
                                            idempotency_key=f"{prefix}-t{i}")
                return res.ok

        t = time.perf_counter()
        assert all(await asyncio.gather(*(one(i) for i in range(PIPELINED))))
        return PIPELINED / (time.perf_counter() - t)

    return {"p50_ms": median(latencies), "per_s": asyncio.run(pipelined())}


def sdk_loaded(ray: Any, namespace: str) -> bool:
    """Whether the router of `namespace` has imported the OpenTelemetry SDK's tracing."""
    router = ray.get_actor("router:email_sending", namespace=namespace)
    return ray.get(router.__ray_call__.remote(
        lambda self: __import__("sys").modules.get("opentelemetry.sdk.trace") is not None), timeout=30)


def main() -> Path:
    from tests.support.otlp import CollectorProcess

    collector = CollectorProcess()  # in a process of its own: its decoding does not take the driver's GIL
    try:
        with local_ray() as ray, ExitStack() as stack:
            namespaces = {}
            traced = {"telemetry": {"traces": {"endpoint": collector.endpoint, "sampling_ratio": 1.0}}}
            for label in VARIANTS:
                spec = stack.enter_context(gateway(capabilities(), namespace=f"aicmo-bench-trace-{label}",
                                                   extra=traced if label == "on" else None))
                namespaces[label] = spec.namespace
            rounds: dict[str, list[dict[str, float]]] = {label: [] for label in VARIANTS}
            for r in range(ROUNDS):
                order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
                for label in order:
                    row = measure(namespaces[label], f"{label}-{r}")
                    rounds[label].append(row)
                    print(label, {k: round(v, 2) for k, v in row.items()}, flush=True)
            loaded = {label: sdk_loaded(ray, ns) for label, ns in namespaces.items()}
            sent = ROUNDS * (SEQUENTIAL + PIPELINED)
            deadline = time.monotonic() + 30  # the last batches leave within a second or two
            while collector.traces < sent and time.monotonic() < deadline:
                time.sleep(0.2)
            traces, spans = collector.traces, collector.spans
    finally:
        collector.close()

    med = {label: {k: median([row[k] for row in rows]) for k in rows[0]} for label, rows in rounds.items()}
    p50_ratio = paired_ratio(rounds, "on", "off", "p50_ms")
    tput_ratio = paired_ratio(rounds, "on", "off", "per_s")
    headers = ["variant", "p50 of one keyed send (ms)", "keyed sends/s (64 in flight)"]
    table = [[label, f"{m['p50_ms']:.2f}", f"{m['per_s']:.0f}"] for label, m in med.items()]
    notes = [
        f"medians of {ROUNDS} alternating rounds; {SEQUENTIAL} sequential and {PIPELINED} pipelined keyed sends per "
        "round and variant, one simulated provider (3 ms)",
        f"on ÷ off: p50 {p50_ratio:.3f}, throughput {tput_ratio:.3f}",
        f"the loopback collector received {traces} traces ({spans} spans) of {sent} requests traced",
        f"OpenTelemetry SDK imported by the router: off {loaded['off']}, on {loaded['on']}",
        "off ÷ the build before issue 23 is not measured here (it needs that build)",
    ]
    targets = [
        target("tracing: p50 of one call, on (sampling 1.0) ÷ off", p50_ratio, 1.10, higher_is_better=False),
        target("tracing: throughput, on ÷ off", tput_ratio, 0.90, higher_is_better=True),
    ]
    return write_results("tracing", {"rounds": rounds, "medians": med, "traces_received": traces,
                                     "spans_received": spans, "sdk_loaded": loaded}, table, headers,
                         title="Traces: what tracing costs the router", notes=notes, targets=targets)


if __name__ == "__main__":
    print(main().read_text())
