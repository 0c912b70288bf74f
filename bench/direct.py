"""Reads routed by the client (issue 11, stretch): `verify_email` sent by the
client straight to the provider its router ranks first (`direct_reads`),
against the same call through the router (`invoke_async`) and against a
bare call to the provider actor (one hop, the floor).

Then the resilience benchmark's faults (three providers failing
independently at 30%): a direct read the provider did not serve goes to the
router, so the success rate must match the router's.

Targets: direct reads' p50 at most 1.15x the bare provider call's; success
under faults within the router's 95% interval.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import gateway, local_ray, medians, paired_ratio, percentile, simulated, target, wilson, write_results

SYNC_CALLS = 300
CONCURRENT_CALLS = 1000
CONCURRENCY = 16
ROUNDS = 5
FAULTY_CALLS = 1000
VERIFY = {"email": "ann@example.com"}
LABELS = {
    "provider": "bare call to the provider actor (one hop, the floor)",
    "direct": "client with direct_reads: straight to the top-ranked provider",
    "router": "client through the router (two hops)",
}


def main() -> Path:
    from actors.client import Gateway
    from actors.messages import CallContext
    from actors.names import provider_name
    from actors.payloads import METHODS, validate_payload

    payload = validate_payload(METHODS["email_verification"]["verify_email"], VERIFY)
    with local_ray() as ray:
        with gateway({"email_verification": {"providers": [simulated("primary", latency_ms=0)]}}) as spec:
            provider = ray.get_actor(provider_name("email_verification", "primary"), namespace=spec.namespace)
            via_router = Gateway(spec.namespace)
            direct = Gateway(spec.namespace, direct_reads=True)

            async def bare() -> bool:
                ctx = CallContext(request_id=uuid.uuid4().hex, method="verify_email", timeout_s=10)
                return (await provider.call.remote("verify_email", payload, ctx)).ok

            async def through(gw: Any) -> bool:
                return (await gw.invoke_async("email_verification", "verify_email", VERIFY)).ok

            variants = {"provider": bare, "direct": lambda: through(direct), "router": lambda: through(via_router)}
            rounds = asyncio.run(_rounds(variants))

        rates = (0.3, 0.3, 0.3)
        faulty = [simulated(f"p{i + 1}", failure_rate=r, latency_ms=5, latency_jitter_ms=2, seed=i + 1)
                  for i, r in enumerate(rates)]
        faults: dict[str, dict[str, float]] = {}
        for i, name in enumerate(("router", "direct")):
            with gateway({"email_verification": {"providers": faulty}}, {"health": {"cooldown_s": 30}},
                         namespace=f"aicmo-bench-direct-{i}") as spec:
                gw = Gateway(spec.namespace, direct_reads=name == "direct")
                faults[name] = asyncio.run(_under_faults(gw))
    return report(rounds, faults)


async def _rounds(variants: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    for fn in variants.values():   # warm up workers and code paths
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
        return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                "throughput_per_s": CONCURRENT_CALLS / (time.perf_counter() - t)}

    out: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(ROUNDS):   # alternating, in a rotating order (as bench.common.alternate, awaited)
        for name in names[r % len(names):] + names[: r % len(names)]:
            out[name].append(await measure(variants[name]))
    return out


async def _under_faults(gw: Any) -> dict[str, float]:
    gate = asyncio.Semaphore(8)

    async def one() -> tuple[bool, int]:
        async with gate:
            res = await gw.invoke_async("email_verification", "verify_email", VERIFY)
            return res.ok, len(res.attempts)

    answers = await asyncio.gather(*(one() for _ in range(FAULTY_CALLS)))
    ok = sum(1 for good, _ in answers if good)
    low, high = wilson(ok, len(answers))
    return {"success": ok / len(answers), "ci_low": low, "ci_high": high,
            "attempts_per_request": sum(n for _, n in answers) / len(answers)}


def report(rounds: dict[str, list[dict[str, float]]], faults: dict[str, dict[str, float]]) -> Path:
    summary = {name: medians(r) for name, r in rounds.items()}
    ratios = {
        "direct_p50_vs_provider": paired_ratio(rounds, "direct", "provider", "p50_ms"),
        "router_p50_vs_provider": paired_ratio(rounds, "router", "provider", "p50_ms"),
        "direct_throughput_vs_provider": paired_ratio(rounds, "direct", "provider", "throughput_per_s"),
        "direct_throughput_vs_router": paired_ratio(rounds, "direct", "router", "throughput_per_s"),
    }
    floor = summary["provider"]
    table = [[LABELS[name], f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['throughput_per_s']:.0f}",
              f"{s['p50_ms'] / floor['p50_ms']:.3f}"] for name, s in summary.items()]
    r, d = faults["router"], faults["direct"]
    table += [[f"under faults (3 providers at 30%): {name}", "", "", "",
               f"success {f['success'] * 100:.2f}% (95% CI {f['ci_low'] * 100:.1f}-{f['ci_high'] * 100:.1f}%), "
               f"{f['attempts_per_request']:.2f} attempts/request"] for name, f in faults.items()]
    targets = [
        target("direct reads: p50 / bare provider call p50", ratios["direct_p50_vs_provider"], 1.15, False,
               why=f"through the router: {ratios['router_p50_vs_provider']:.2f}x"),
        target("direct reads under faults: success, points above the router's 95% CI low", (d["success"] - r["ci_low"]) * 100,
               0.0, True, fmt="{:+.2f}",
               why=f"{d['success'] * 100:.2f}% vs the router's {r['success'] * 100:.2f}% "
                   f"(CI {r['ci_low'] * 100:.1f}-{r['ci_high'] * 100:.1f}%)"),
        target("direct reads: throughput / through the router", ratios["direct_throughput_vs_router"], None, True),
    ]
    notes = [
        f"{ROUNDS} alternating rounds of {SYNC_CALLS} sequential calls (p50, p99) and {CONCURRENT_CALLS} calls with "
        f"{CONCURRENCY} in flight; medians of the rounds; a simulated verifier with no latency. The client asks the "
        "router for its ranking at most once a second (RANKING_VALID_FOR_S) and after any failure.",
        f"Under faults: {FAULTY_CALLS} calls, 8 in flight, against three simulated providers failing independently at "
        "30% (5 ms each), the resilience benchmark's faults; a direct read the provider did not serve goes to the "
        "router, which falls back.",
    ]
    return write_results(
        "direct",
        {"rounds": ROUNDS, "median_of_rounds": summary, "ratios": ratios, "faults": faults, "per_round": rounds},
        table, ["variant", "p50 ms", "p99 ms", f"calls/s ({CONCURRENCY} in flight)", "p50 / provider call"],
        title="Reads routed by the client", notes=notes, targets=targets)
