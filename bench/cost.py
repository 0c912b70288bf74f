"""Cost- and quota-aware routing: a verification workload over two simulated
providers at different prices, the cheap one with a small hourly quota,
through the gateway ranked `by_cost` and by the default ranking (`by_health`),
in the same run.

The dear provider is configured first (the provider a team started with; the
cheap one added later), so the default ranking, which keeps the configured
order among equally healthy providers, sends it everything. A variant with
the cheap one first shows that the quota holds under any ranking: it is
spent, then skipped as `quota_exhausted`. Each variant runs in a gateway of
its own with fresh state (a fresh quota), in rounds that alternate.

Reported per variant: success rate, total spend (the providers' own
`status` figures: charged calls at their price), spend per successful
request, calls per provider, and the cheap provider's calls past its quota
(calls in flight when it was spent). Target: by_cost spends less than the
default ranking for the same success.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.common import alternate, drive, gateway, local_ray, median, target, wilson, write_results

CAP = "email_verification"
PRICES = {"dear": "0.010", "cheap": "0.004"}
FAILURE = {"dear": 0.01, "cheap": 0.03}
QUOTA = 200                       # the cheap provider's calls per hour
REQUESTS = 600                    # per variant and round
CONCURRENCY = 8
ROUNDS = 2
VARIANTS: dict[str, tuple[str, list[str]]] = {   # ranking, configured order
    "by_health": ("actors.policy.ranking:by_health", ["dear", "cheap"]),
    "by_cost": ("actors.policy.ranking:by_cost", ["dear", "cheap"]),
    "by_health_cheap_first": ("actors.policy.ranking:by_health", ["cheap", "dear"]),
}
LABELS = {
    "by_health": "default ranking (by_health), dear provider first",
    "by_cost": "by_cost, dear provider first",
    "by_health_cheap_first": "default ranking (by_health), cheap provider first",
}


def capabilities(ranking: str, order: list[str]) -> dict[str, Any]:
    providers = []
    for i, name in enumerate(order):
        p: dict[str, Any] = {"name": name, "adapter": "simulated",
                             "settings": {"latency_ms": 3, "latency_jitter_ms": 1, "failure_rate": FAILURE[name],
                                          "seed": i + 1},
                             "cost": {"per_call": PRICES[name], "currency": "USD"}}
        if name == "cheap":
            p["quota"] = {"limit": QUOTA, "per": "hour"}
        providers.append(p)
    return {CAP: {"policy": {"routing": {"ranking": ranking}}, "providers": providers}}


def run_variant(ray: Any, variant: str, round_no: int) -> dict[str, Any]:
    from actors.client import Gateway

    ranking, order = VARIANTS[variant]
    with ExitStack() as stack:
        spec = stack.enter_context(gateway(capabilities(ranking, order), namespace=f"aicmo-bench-cost-{variant}-{round_no}"))
        router = Gateway(spec.namespace).router(CAP)

        async def one(i: int) -> tuple[bool, str | None, int]:
            res = await router.invoke.remote("verify_email", {"email": f"lead{i}@example.com"})
            return res.ok, res.provider, len(res.attempts)

        out, wall = asyncio.run(drive(one, REQUESTS, CONCURRENCY))
        status = ray.get(router.status.remote(), timeout=60)
    providers = {p.name: p for p in status.providers}
    ok = sum(r[0] for _, r in out)
    served = {name: sum(1 for _, r in out if r[0] and r[1] == name) for name in PRICES}
    spend = sum(p.spend for p in providers.values())
    return {
        "requests": REQUESTS, "ok": ok, "success": ok / REQUESTS, "wall_s": wall,
        "spend": spend, "spend_per_success": spend / ok if ok else None,
        "served": served, "attempts": sum(r[2] for _, r in out) / REQUESTS,
        "calls": {n: providers[n].total_calls for n in PRICES},
        "spend_by_provider": {n: providers[n].spend for n in PRICES},
        "cheap_quota_left": providers["cheap"].quota_left,
        # charged calls past the quota: those in flight when it was spent (failed calls are free)
        "cheap_past_quota": max(0, round(providers["cheap"].spend / float(PRICES["cheap"])) - QUOTA),
        "health": {n: str(providers[n].health) for n in PRICES},
    }


def main() -> Path:
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    with local_ray() as ray:
        counter = {"n": 0}

        def make(v: str) -> Any:
            def go() -> dict[str, float]:
                counter["n"] += 1
                runs[v].append(run_variant(ray, v, counter["n"]))
                return {"spend": runs[v][-1]["spend"]}
            return go

        rounds = alternate({v: make(v) for v in VARIANTS}, ROUNDS)

    summary: dict[str, dict[str, Any]] = {}
    table = []
    for v in VARIANTS:
        rs = runs[v]
        ok, n = sum(r["ok"] for r in rs), sum(r["requests"] for r in rs)
        lo, hi = wilson(ok, n)
        s = {"success": ok / n, "success_ci95": [lo, hi], "spend_median": median([r["spend"] for r in rs]),
             "spend_per_1000_success": median([r["spend_per_success"] * 1000 for r in rs]),
             "cheap_share": median([r["served"]["cheap"] / max(1, r["ok"]) for r in rs]),
             "cheap_past_quota": max(r["cheap_past_quota"] for r in rs),
             "attempts": median([r["attempts"] for r in rs])}
        summary[v] = s
        table.append([LABELS[v], f"{s['success'] * 100:.2f}", f"{lo * 100:.1f}–{hi * 100:.1f}",
                      f"{s['spend_median']:.3f}", f"{s['spend_per_1000_success']:.2f}", f"{s['cheap_share'] * 100:.1f}",
                      str(s["cheap_past_quota"]), f"{s['attempts']:.3f}"])
    ratio = median([a["spend"] / b["spend"] for a, b in zip(runs["by_cost"], runs["by_health"], strict=True)])
    success_delta = (summary["by_cost"]["success"] - summary["by_health"]["success"]) * 100
    ideal = QUOTA * float(PRICES["cheap"]) + (REQUESTS - QUOTA) * float(PRICES["dear"])
    targets = [
        target("cost: spend by_cost / default ranking (same workload, same run)", ratio, 1.0, False, "{:.3f}",
               f"success by_cost − default {success_delta:+.2f} points"),
        target("cost: by_cost spend / the least possible (quota at the cheap price, the rest at the dear one)",
               summary["by_cost"]["spend_median"] / ideal, 1.02, False, "{:.3f}", f"{ideal:.2f} USD per round"),
        target("cost: cheap provider's calls past its quota (calls in flight when spent)",
               summary["by_cost"]["cheap_past_quota"], float(CONCURRENCY), False, "{:.0f}"),
    ]
    headers = ["variant", "success %", "95% CI", "spend USD (median per round)", "USD per 1000 successes",
               "served by cheap %", "cheap calls past quota", "attempts/request"]
    notes = [
        f"{REQUESTS} email verifications per variant and round, {CONCURRENCY} in flight, {ROUNDS} alternating rounds, "
        f"each in a fresh gateway (fresh quota). Providers: simulated, 3 ± 1 ms; dear {PRICES['dear']} USD per call, "
        f"{FAILURE['dear']:.0%} transient errors, no quota; cheap {PRICES['cheap']} USD, {FAILURE['cheap']:.0%} "
        f"transient errors, quota {QUOTA} calls per hour.",
        "spend: the providers' own status (charged calls at their price, this period); a failed call is not charged.",
        f"spend ratio by_cost / default: median over rounds of the paired ratio = {ratio:.3f}. The default ranking "
        "spreads calls by health and latency whatever the price (the cheap provider, failing more, is often "
        "DEGRADED, so even configured first it serves a minority); by_cost spends the cheap quota first, then "
        f"falls back, close to the least possible ({ideal:.2f} USD per round).",
        "Calls past the quota: charged calls the cheap provider made after its limit, i.e. those in flight when "
        "it was spent (a router learns it from the reply that spends it).",
    ]
    data = {"variants": summary, "runs": runs, "spend_ratio_by_cost_vs_default": ratio, "ideal_ratio": ideal,
            "rounds": rounds, "quota": QUOTA, "prices": PRICES, "failure_rates": FAILURE}
    return write_results("cost", data, table, headers, title="Cost and quotas: spend by_cost vs the default ranking",
                         notes=notes, targets=targets)


if __name__ == "__main__":
    print(main().read_text())
