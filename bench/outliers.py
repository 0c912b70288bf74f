"""Outlier ejection on Ray: three simulated providers answering in about
50 ms; the primary (which the seed's ranking keeps first for its success
streak) turns ten times slower after a warm-up and never fails. Two
gateways are deployed side by side and driven with the same open-loop
schedule (RATE requests/s), one with outlier ejection off (the baseline),
one with it on (`policy.outlier` defaults: sweeps every 10 s, ejections of
30 s x ejections in a row, up to 300 s, probation after a return); the
supervisor probes every
PROBE_S. Reported, per variant, from the slowdown on: the slow provider's
share of requests and the p50/p99 latency as the driver sees it, before the
first ejection, after it, and over the whole run; the first ejection's
delay. The pure simulation (bench/outlier_sim.py) is the same case without
Ray.

    python -m bench outliers     # writes bench/results/outliers.{json,md}
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.common import local_ray, percentile, target, write_results

PEER_MS = 50.0
SLOW_MS = 500.0          # 10x
JITTER_MS = 10.0
RATE = 10.0              # requests/s, per variant
WARMUP_S = 15.0
RUN_S = 120.0            # after the slowdown
PROBE_S = 5.0            # supervisor.check_interval_s (the default, 60 s, would take minutes to see a slowdown)
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}
VARIANTS = {"off": "ejection off (baseline)", "on": "ejection on (policy.outlier defaults)"}


def config(namespace: str, state_dir: str, enabled: bool) -> dict[str, Any]:
    def sim(name: str, seed: int) -> dict[str, Any]:
        return {"name": name, "adapter": "simulated",
                "settings": {"latency_ms": PEER_MS, "latency_jitter_ms": JITTER_MS, "seed": seed}}

    return {
        "namespace": namespace, "state": {"url": state_dir},
        "supervisor": {"check_interval_s": PROBE_S, "check_jitter_s": 0, "drain_interval_s": 0,
                       "probe_all_nodes": False, "sample_interval_s": 0},
        "policy": {"outlier": {"enabled": enabled}},
        "capabilities": {"email_sending": {"providers": [sim("primary", 1), sim("a", 2), sim("b", 3)]}},
    }


@contextmanager
def deployed(namespace: str, enabled: bool) -> Any:
    from actors.config import parse_config
    from actors.deploy.gateway import deploy, teardown
    from actors.specs import build_spec

    state_dir = tempfile.mkdtemp(prefix="aicmo-bench-state-")
    try:
        deploy(build_spec(parse_config(config(namespace, state_dir, enabled), "<bench>", env={})), detached=False)
        try:
            yield namespace
        finally:
            teardown(namespace)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


async def drive(router: Any, start: float, seconds: float) -> list[tuple[float, str | None, float]]:
    """Open loop: a request every 1/RATE s from `start` (monotonic); [(sent_at, provider, latency_ms)]."""
    async def one(at: float) -> tuple[float, str | None, float]:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        t = time.monotonic()
        res = await router.invoke.remote("send_email", EMAIL)
        return t - start, res.provider if res.ok else None, (time.monotonic() - t) * 1000

    n = int(seconds * RATE)
    return list(await asyncio.gather(*(one(start + i / RATE) for i in range(n))))


def summary(records: list[tuple[float, str | None, float]], since: float, until: float) -> dict[str, float]:
    part = [r for r in records if since <= r[0] < until]
    lat = [r[2] for r in part]
    return {"requests": len(part), "share": sum(r[1] == "primary" for r in part) / len(part) if part else float("nan"),
            "failed": sum(r[1] is None for r in part), "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99)}


def main() -> Path:
    import ray

    from actors.client import Gateway
    from actors.names import provider_name

    with local_ray() as _, ExitStack() as stack:
        routers = {}
        for v in VARIANTS:
            ns = stack.enter_context(deployed(f"aicmo-bench-outliers-{v}", enabled=(v == "on")))
            routers[v] = (ns, Gateway(ns).router("email_sending"))

        async def run() -> tuple[dict[str, list[Any]], dict[str, list[Any]], float]:
            start = time.monotonic() + 0.5
            warm = await asyncio.gather(*(drive(r, start, WARMUP_S) for _, r in routers.values()))
            for ns, _ in routers.values():
                await ray.get_actor(provider_name("email_sending", "primary"), namespace=ns).inject_fault.remote(
                    latency_ms=SLOW_MS)
            slowed_wall, start = time.time(), time.monotonic()
            after = await asyncio.gather(*(drive(r, start, RUN_S) for _, r in routers.values()))
            return dict(zip(routers, warm, strict=True)), dict(zip(routers, after, strict=True)), slowed_wall

        warm, after, slowed_wall = asyncio.run(run())
        for _, r in routers.values():
            ray.get(r.flush_ops.remote(), timeout=60)
        audit = {v: [x for x in ray.get(r.audit_tail.remote(20_000), timeout=60)["records"] if x.get("type") == "outlier"]
                 for v, (_, r) in routers.items()}

    ejections = [x for x in audit["on"] if x["event"] == "Ejected"]
    first = min((x["at"] - slowed_wall for x in ejections), default=None)
    split = first if first is not None else RUN_S
    results: dict[str, Any] = {}
    for v in VARIANTS:
        results[v] = {"warmup": summary(warm[v], 0, WARMUP_S), "before": summary(after[v], 0, split),
                      "after": summary(after[v], split, RUN_S), "whole": summary(after[v], 0, RUN_S),
                      "ejections": sum(x["event"] == "Ejected" for x in audit[v]),
                      "events": [{k: x.get(k) for k in ("event", "name", "reason", "until", "ejections")}
                                 | {"t_s": round(x["at"] - slowed_wall, 1)} for x in audit[v]]}
    table = []
    for v, label in VARIANTS.items():
        r = results[v]
        for phase, text in (("warmup", "before the slowdown"), ("before", "slowdown to first ejection"),
                            ("after", "after the first ejection"), ("whole", "whole run after the slowdown")):
            s = r[phase]
            table.append([label, text, str(s["requests"]), f"{s['share'] * 100:.1f}%", f"{s['p50_ms']:.0f}",
                          f"{s['p99_ms']:.0f}", str(s["failed"])])
    on, off = results["on"], results["off"]
    ratio = on["after"]["p99_ms"] / off["after"]["p99_ms"]
    targets = [
        target("outliers: slow provider's share after the first ejection, on (%)", on["after"]["share"] * 100, None,
               False, "{:.1f}", f"off: {off['after']['share'] * 100:.1f}%"),
        target("outliers: p99 after the first ejection, on / off", ratio, None, False, "{:.2f}",
               f"{on['after']['p99_ms']:.0f} vs {off['after']['p99_ms']:.0f} ms"),
        target("outliers: first ejection after the slowdown (s)", first if first is not None else float("nan"), None,
               False, "{:.1f}", f"sweeps every 10 s, probes every {PROBE_S:g} s, 3 slow probes needed"),
    ]
    notes = [
        f"Three simulated providers, {PEER_MS:g} ± {JITTER_MS:g} ms; the primary turns {SLOW_MS / PEER_MS:g}x slower "
        f"({SLOW_MS:g} ms) after {WARMUP_S:g} s and never fails. {RATE:g} requests/s per variant, open loop, both "
        f"gateways driven at once on one local Ray (2 CPUs), {RUN_S:g} s after the slowdown. Latency end to end as "
        "the driver sees it (Ray hops included).",
        f"First ejection {first:.1f} s after the slowdown; {on['ejections']} ejection(s) in the run (a returned "
        "provider is on probation, policy.outlier.probation: still tried after the rest until a sweep judges it on "
        "its probes, then reinstated or, still slow, ejected again for longer). 'before' / 'after' split both "
        "variants at the on-variant's first ejection." if first is not None else "No ejection happened.",
        "The peers serve no live traffic before the ejection (the seed's ranking sends every request to the "
        "primary), so the slowdown is seen in the health-check probes (policy.outlier.slow_calls.probe_*).",
        "Ejection events: " + "; ".join(f"{e['event']} {e.get('name') or ''} at +{e['t_s']}s" for e in on["events"]),
    ]
    return write_results("outliers", {"variants": results, "first_ejection_s": first, "peer_ms": PEER_MS,
                                      "slow_ms": SLOW_MS, "rate_per_s": RATE, "run_s": RUN_S, "probe_s": PROBE_S},
                         table, ["variant", "phase", "requests", "slow provider's share", "p50 ms", "p99 ms", "failed"],
                         title="Outlier ejection: a provider 10x slower than its peers", notes=notes, targets=targets)


if __name__ == "__main__":
    print(main().read_text())
