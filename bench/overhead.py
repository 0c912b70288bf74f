"""Overhead of the router: `invoke` through the router against a direct call
to the same provider actor (one hop) and a trivial forwarding actor (two
hops, the floor for any design that puts an actor in front of providers).

Targets (issue 2/6): router p50 <= 1.05x the forwarder's, pipelined
throughput >= 0.9x the forwarder's.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import alternate, local_ray, medians, percentile, verdict, write_results

SYNC_CALLS = 200          # sequential round trips per round
PIPELINED_CALLS = 500     # submitted at once per round
ROUNDS = 7
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}

CONFIG = {
    "namespace": "aicmo-bench",
    "supervisor": {"check_interval_s": 0},
    "capabilities": {"email_sending": {"providers": [
        {"name": "primary", "adapter": "simulated", "settings": {"latency_ms": 0}}]}},
}


def main() -> Path:
    with local_ray() as ray:
        from actors.config import parse_config
        from actors.messages import CallContext
        from actors.payloads import METHODS, validate_payload
        from actors.runtime.deploy import deploy, teardown
        from actors.runtime.specs import build_spec

        spec = build_spec(parse_config(CONFIG, "<bench>", env={}))
        deploy(spec, detached=False)
        ns = spec.namespace
        router = ray.get_actor("router:email_sending", namespace=ns)
        provider = ray.get_actor("provider:email_sending:primary", namespace=ns)

        @ray.remote(num_cpus=0)
        class Forwarder:
            """The two-hop floor: takes a call and passes it on, nothing else."""

            def __init__(self, target: Any):
                self.target = target

            async def call(self, method: str, payload: Any, ctx: Any) -> Any:
                return await self.target.call.remote(method, payload, ctx)

        forwarder = Forwarder.remote(provider)
        payload = validate_payload(METHODS["email_sending"]["send_email"], EMAIL)

        def ctx() -> CallContext:
            return CallContext(request_id=uuid.uuid4().hex, method="send_email", timeout_s=10)

        submit = {
            "direct": lambda: provider.call.remote("send_email", payload, ctx()),
            "forwarder": lambda: forwarder.call.remote("send_email", payload, ctx()),
            "router": lambda: router.invoke.remote("send_email", EMAIL),
        }
        for fn in submit.values():  # warm up workers, connections and code paths
            ray.get([fn() for _ in range(100)])

        def measure(fn: Any) -> dict[str, float]:
            latencies = []
            for _ in range(SYNC_CALLS):
                t = time.perf_counter()
                ray.get(fn())
                latencies.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            results = ray.get([fn() for _ in range(PIPELINED_CALLS)])
            elapsed = time.perf_counter() - t
            assert all(getattr(r, "ok", True) for r in results)
            return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                    "throughput_per_s": PIPELINED_CALLS / elapsed}

        rounds = alternate({name: (lambda fn=fn: measure(fn)) for name, fn in submit.items()}, ROUNDS)
        teardown(ns)

    summary = {name: medians(r) for name, r in rounds.items()}
    fwd, rtr = summary["forwarder"], summary["router"]
    ratios = {
        "router_p50_vs_forwarder": rtr["p50_ms"] / fwd["p50_ms"],
        "router_p99_vs_forwarder": rtr["p99_ms"] / fwd["p99_ms"],
        "router_throughput_vs_forwarder": rtr["throughput_per_s"] / fwd["throughput_per_s"],
        "router_p50_vs_direct": rtr["p50_ms"] / summary["direct"]["p50_ms"],
    }
    table = [[name, f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['throughput_per_s']:.0f}",
              f"{s['p50_ms'] / fwd['p50_ms']:.3f}", f"{s['throughput_per_s'] / fwd['throughput_per_s']:.3f}"]
             for name, s in summary.items()]
    table.append(["target (router)", "", "", "", f"<= 1.05: {verdict(ratios['router_p50_vs_forwarder'], 1.05, False)}",
                  f">= 0.90: {verdict(ratios['router_throughput_vs_forwarder'], 0.9, True)}"])

    def plot(path: Path) -> None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        names = list(summary)
        for ax, key, label in ((axes[0], "p50_ms", "sync round trip p50 (ms)"),
                               (axes[1], "throughput_per_s", "pipelined calls/s")):
            for i, name in enumerate(names):
                values = [r[key] for r in rounds[name]]
                ax.scatter([i] * len(values), values, alpha=0.5)
                ax.bar(i, summary[name][key], alpha=0.3)
            ax.set_xticks(range(len(names)), names)
            ax.set_title(label)
        fig.suptitle(f"router overhead: p50 {ratios['router_p50_vs_forwarder']:.3f}x forwarder, "
                     f"throughput {ratios['router_throughput_vs_forwarder']:.3f}x")
        fig.tight_layout()
        fig.savefig(path, dpi=100)

    return write_results(
        "overhead",
        {"rounds": ROUNDS, "sync_calls": SYNC_CALLS, "pipelined_calls": PIPELINED_CALLS,
         "median_of_rounds": summary, "ratios": ratios, "per_round": rounds},
        table, ["variant", "p50 ms", "p99 ms", "calls/s pipelined", "p50 / forwarder", "calls/s / forwarder"], plot)


if __name__ == "__main__":
    print(main().read_text())
