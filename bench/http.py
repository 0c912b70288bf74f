"""The HTTP API's cost: `POST /v1/email_verification/verify_email` through
Serve's proxy, the ingress replica, the router and the provider, against
the same call made with the Python client (`invoke_async`, no HTTP), and
against a bare Serve echo deployment (the HTTP floor: Serve's proxy and
one replica that answers the body it got, nothing else).

A second floor, the echo plus one Ray hop (Serve's proxy, one replica that
awaits one call to a bare actor and answers what it got back), is what any
HTTP path that reaches a provider actor pays at least: `http.direct_reads`
makes exactly that one hop (issue 20 asks for it within 1.1x the echo;
the hop alone costs more than that on this machine, so it is measured
against both floors).

Target (issue 11): the HTTP ingress's p50 at most 1.1x the echo floor's.
An HTTP call also carries the two Ray hops of an `invoke` (router, then
provider), which the echo does not make, so the figure that isolates what
the ingress itself adds is (HTTP p50 - invoke p50) / echo p50, reported
beside it.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from bench.common import (
    gateway,
    local_ray,
    median,
    medians,
    paired_ratio,
    percentile,
    simulated,
    target,
    write_results,
)

SYNC_CALLS = 200          # sequential round trips per round (p50, p99)
CONCURRENT_CALLS = 600    # per round, CONCURRENCY in flight (throughput)
CONCURRENCY = 16
ROUNDS = 5
VERIFY = {"email": "ann@example.com"}
LABELS = {
    "echo": "bare Serve echo deployment (the HTTP floor)",
    "echo_hop": "Serve echo + one Ray hop to a bare actor (the floor of any path to a provider actor)",
    "http": "HTTP API: POST /v1/email_verification/verify_email",
    "http_direct": "HTTP API with http.direct_reads (one Ray hop to the provider)",
    "invoke": "Python client `invoke_async` (no HTTP)",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> Path:
    import httpx
    import msgspec
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    from actors.client import Gateway
    from actors.http.deployment import deploy_http, ingress_app, remove_http
    from actors.specs.http import HttpSpec, key_digest

    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
    class Echo:
        async def __call__(self, request: Request) -> Response:
            return Response(await request.body(), media_type="application/json")

    @ray.remote(num_cpus=0)
    class Bare:
        async def call(self, body: bytes) -> bytes:
            return body

    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
    class EchoHop:
        def __init__(self, bare: Any):
            self._bare = bare

        async def __call__(self, request: Request) -> Response:
            return Response(await self._bare.call.remote(await request.body()), media_type="application/json")

    key = secrets.token_urlsafe(24)
    port = _free_port()
    with local_ray(), gateway({"email_verification": {"providers": [simulated("primary", latency_ms=0)]}}) as spec:
        http_spec = HttpSpec(namespace=spec.namespace, host="127.0.0.1", port=port, key_digests=[key_digest(key)],
                             capabilities=["email_verification"])
        url = deploy_http(http_spec)
        serve.run(Echo.bind(), name="bench-echo", route_prefix="/echo", blocking=False)
        bare = Bare.remote()
        serve.run(EchoHop.bind(bare), name="bench-echo-hop", route_prefix="/echo-hop", blocking=False)
        # The same ingress with direct_reads, under a prefix of its own.
        serve.run(ingress_app(msgspec.structs.replace(http_spec, direct_reads=True)), name="bench-http-direct",
                  route_prefix="/direct", blocking=False)
        gw = Gateway(spec.namespace)
        try:
            rounds = asyncio.run(_measure(gw, url, key, httpx))
        finally:
            serve.delete("bench-echo")
            serve.delete("bench-echo-hop")
            serve.delete("bench-http-direct")
            remove_http(spec.namespace)
            serve.shutdown()
    return report(rounds)


async def _measure(gw: Any, url: str, key: str, httpx: Any) -> dict[str, list[dict[str, float]]]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        async def echo() -> bool:
            answer = await client.post("/echo", json=VERIFY)
            return answer.status_code == 200

        async def echo_hop() -> bool:
            answer = await client.post("/echo-hop", json=VERIFY)
            return answer.status_code == 200

        async def http() -> bool:
            answer = await client.post("/v1/email_verification/verify_email", json=VERIFY)
            return answer.status_code == 200

        async def http_direct() -> bool:
            answer = await client.post("/direct/v1/email_verification/verify_email", json=VERIFY)
            return answer.status_code == 200

        async def invoke() -> bool:
            return (await gw.invoke_async("email_verification", "verify_email", VERIFY)).ok

        variants = {"echo": echo, "echo_hop": echo_hop, "http": http, "http_direct": http_direct, "invoke": invoke}
        for fn in variants.values():   # warm up connections, workers and code paths
            assert all(await asyncio.gather(*(fn() for _ in range(100))))

        async def measure(fn: Any) -> dict[str, float]:
            latencies = []
            for _ in range(SYNC_CALLS):
                t = time.perf_counter()
                assert await fn()
                latencies.append((time.perf_counter() - t) * 1000)
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one() -> bool:
                async with gate:
                    return await fn()

            t = time.perf_counter()
            assert all(await asyncio.gather(*(one() for _ in range(CONCURRENT_CALLS))))
            elapsed = time.perf_counter() - t
            return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                    "throughput_per_s": CONCURRENT_CALLS / elapsed}

        # Alternating rounds in a rotating order, as bench.common.alternate, but awaited.
        out: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for r in range(ROUNDS):
            names = list(variants)
            for name in names[r % len(names):] + names[: r % len(names)]:
                out[name].append(await measure(variants[name]))
        return out


def report(rounds: dict[str, list[dict[str, float]]]) -> Path:
    summary = {name: medians(r) for name, r in rounds.items()}
    ratios = {
        "http_p50_vs_echo": paired_ratio(rounds, "http", "echo", "p50_ms"),
        "http_p50_vs_invoke": paired_ratio(rounds, "http", "invoke", "p50_ms"),
        "http_throughput_vs_echo": paired_ratio(rounds, "http", "echo", "throughput_per_s"),
        "http_throughput_vs_invoke": paired_ratio(rounds, "http", "invoke", "throughput_per_s"),
        "http_direct_p50_vs_echo": paired_ratio(rounds, "http_direct", "echo", "p50_ms"),
        "http_direct_p50_vs_echo_hop": paired_ratio(rounds, "http_direct", "echo_hop", "p50_ms"),
        "echo_hop_p50_vs_echo": paired_ratio(rounds, "echo_hop", "echo", "p50_ms"),
        "ingress_added_p50_vs_echo": median([(h["p50_ms"] - i["p50_ms"]) / e["p50_ms"] for h, i, e in
                                             zip(rounds["http"], rounds["invoke"], rounds["echo"], strict=True)]),
    }
    echo = summary["echo"]
    table = [[LABELS[name], f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['throughput_per_s']:.0f}",
              f"{s['p50_ms'] / echo['p50_ms']:.3f}", f"{s['throughput_per_s'] / echo['throughput_per_s']:.3f}"]
             for name, s in summary.items()]
    targets = [
        target("HTTP API p50 / bare Serve echo p50", ratios["http_p50_vs_echo"], 1.1, False,
               why="the HTTP call also makes an invoke's two Ray hops (router, provider), which the echo does not"),
        target("what the ingress adds: (HTTP p50 - invoke p50) / echo p50", ratios["ingress_added_p50_vs_echo"], 1.1,
               False, why="the HTTP path's cost beyond the invoke it makes, against Serve's own floor"),
        target("HTTP API with direct_reads: p50 / echo p50", ratios["http_direct_p50_vs_echo"], 1.1, False,
               why=f"one Ray hop beyond the echo, to the provider the router ranks first; that hop alone, on a bare "
                   f"actor: {ratios['echo_hop_p50_vs_echo']:.3f}x the echo"),
        target("HTTP API with direct_reads: p50 / (echo + one Ray hop) p50", ratios["http_direct_p50_vs_echo_hop"], 1.1,
               False, why="what the ingress, the client and the provider actor add beyond the hop they must make"),
        target("HTTP API throughput / echo throughput", ratios["http_throughput_vs_echo"], None, True,
               why=f"vs the client's invoke: {ratios['http_throughput_vs_invoke']:.3f}"),
    ]
    notes = [
        f"{ROUNDS} alternating rounds of {SYNC_CALLS} sequential calls (p50, p99) and {CONCURRENT_CALLS} calls with "
        f"{CONCURRENCY} in flight (calls/s); medians of the rounds; httpx with keep-alive connections from the same "
        "process. A simulated verifier with no latency, so only hops and the gateway's own work are measured.",
        "Targets use paired ratios (each round's variant against the same round's echo, median over rounds).",
    ]

    def plot(path: Path) -> None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        names = list(summary)
        for ax, key, label in ((axes[0], "p50_ms", "sequential p50 (ms)"),
                               (axes[1], "throughput_per_s", f"calls/s, {CONCURRENCY} in flight")):
            for i, name in enumerate(names):
                values = [r[key] for r in rounds[name]]
                ax.scatter([i] * len(values), values, alpha=0.5)
                ax.bar(i, summary[name][key], alpha=0.3)
            ax.set_xticks(range(len(names)), names)
            ax.set_title(label)
        fig.suptitle(f"HTTP API: p50 {ratios['http_p50_vs_echo']:.2f}x the Serve echo floor; "
                     f"ingress adds {ratios['ingress_added_p50_vs_echo']:.2f}x the floor")
        fig.tight_layout()
        fig.savefig(path, dpi=100)

    return write_results(
        "http",
        {"rounds": ROUNDS, "sync_calls": SYNC_CALLS, "concurrent_calls": CONCURRENT_CALLS, "concurrency": CONCURRENCY,
         "median_of_rounds": summary, "ratios": ratios, "per_round": rounds},
        table, ["variant", "p50 ms", "p99 ms", f"calls/s ({CONCURRENCY} in flight)", "p50 / echo", "calls/s / echo"],
        plot, title="The HTTP API against the Serve floor and the client", notes=notes, targets=targets)


if __name__ == "__main__":
    print(main().read_text())
