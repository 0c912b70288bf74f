"""Router replicas (issue 20): one router per capability against two, in one run.

1. **A router killed mid-traffic.** 100 keyed sends per second through the
   Python client (`invoke_async`, open loop: each request leaves at its
   time whatever the others do) for 12 s; at 4 s the capability's first
   router (`router:email_sending`) is killed and Ray restarts it. Reported:
   the slowest request sent within 3 s of the kill, p99 over the run, and
   lost and duplicated sends (the simulated provider's ledger). With one
   router every caller waits for Ray's restart; with two the client resends
   to the live sibling at once, and only the keys the dead one had claimed
   wait for its restart (their claims end when it is back).
2. **Throughput**, pipelined through the client (64 in flight): idempotent
   calls (`verify_email`) and keyed sends, 2 replicas ÷ 1, with the CPU time
   per call of each process on the path (driver, routers, provider), which
   says where a 2-core machine's ceiling is, and what the figures give on
   paper for more nodes.
3. **p50 of one call** (sequential), 2 replicas ÷ 1: spreading must not cost
   latency (target ≤ 1.05).

Variants alternate in rounds (bench/common.py) so drift hits both alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.common import (
    gateway,
    local_ray,
    median,
    paired_ratio,
    percentile,
    simulated,
    target,
    write_results,
)

RATE_PER_S = 100
RUN_S = 12.0
KILL_AT_S = 4.0
WINDOW_S = 3.0
PIPELINED = 1000
IN_FLIGHT = 64
SEQUENTIAL = 300
ROUNDS = 3
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}
VERIFY = {"email": "ann@example.com"}
VARIANTS = {"1 replica": 1, "2 replicas": 2}


def capabilities(ledger: Path) -> dict[str, Any]:
    return {"email_sending": {"providers": [simulated("sim", latency_ms=3, latency_jitter_ms=1, ledger=str(ledger))]},
            "email_verification": {"providers": [simulated("verify", latency_ms=3, latency_jitter_ms=1)]}}


async def open_loop(gw: Any, prefix: str, kill: Any) -> list[tuple[float, float, bool]]:
    """(sent at, latency ms, ok) of each keyed send; `kill()` runs at KILL_AT_S."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(i: int) -> tuple[float, float, bool]:
        await asyncio.sleep(max(0.0, start + i / RATE_PER_S - loop.time()))
        sent = loop.time()
        res = await gw.invoke_async("email_sending", "send_email", {**EMAIL, "subject": f"{prefix}-{i}"},
                                    idempotency_key=f"{prefix}-{i}", deadline_s=30)
        return sent - start, (loop.time() - sent) * 1000, res.ok

    async def killer() -> None:
        await asyncio.sleep(KILL_AT_S)
        await asyncio.to_thread(kill)

    results, _ = await asyncio.gather(asyncio.gather(*(one(i) for i in range(int(RATE_PER_S * RUN_S)))), killer())
    return results


def kill_run(ray: Any, namespace: str, ledger: Path, prefix: str) -> dict[str, float]:
    from actors.client import Gateway
    from actors.names import router_name

    gw = Gateway(namespace)
    first = ray.get_actor(router_name("email_sending"), namespace=namespace)
    results = asyncio.run(open_loop(gw, prefix, lambda: ray.kill(first, no_restart=False)))
    near = [ms for at, ms, _ in results if KILL_AT_S <= at <= KILL_AT_S + WINDOW_S]
    delivered = Counter(json.loads(line)["idempotency_key"] for line in ledger.read_text().splitlines()
                        if line.strip() and json.loads(line)["idempotency_key"].startswith(prefix + "-"))
    sent = len(results)
    return {"slowest_near_kill_ms": max(near), "p99_ms": percentile([ms for _, ms, _ in results], 99),
            "over_500ms": float(sum(1 for _, ms, _ in results if ms > 500)),
            "lost": float(sent - len(delivered)), "duplicated": float(sum(n - 1 for n in delivered.values())),
            "failed": float(sum(1 for *_, ok in results if not ok)), "resent": float(gw.resent)}


def pids(ray: Any, namespace: str) -> dict[str, list[int]]:
    from actors.names import is_gateway_actor

    out: dict[str, list[int]] = {"driver": [os.getpid()], "routers": [], "providers": []}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        if entry["namespace"] != namespace or not is_gateway_actor(name) or name == "supervisor":
            continue
        handle = ray.get_actor(name, namespace=namespace)
        pid = ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
        out["routers" if name.startswith("router:") else "providers"].append(pid)
    return out


def throughput(ray: Any, namespace: str, prefix: str) -> dict[str, float]:
    import psutil  # Ray ships it

    from actors.client import Gateway

    gw = Gateway(namespace)
    procs = pids(ray, namespace)

    def cpu_s(role: str) -> float:
        total = 0.0
        for pid in procs[role]:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        return total

    async def pipelined(keyed: bool) -> float:
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> bool:
            async with sem:
                if keyed:
                    res = await gw.invoke_async("email_sending", "send_email", {**EMAIL, "subject": f"{prefix}-t{i}"},
                                                idempotency_key=f"{prefix}-t{i}")
                else:
                    res = await gw.invoke_async("email_verification", "verify_email", VERIFY)
                return res.ok

        t = time.perf_counter()
        oks = await asyncio.gather(*(one(i) for i in range(PIPELINED)))
        assert all(oks)
        return PIPELINED / (time.perf_counter() - t)

    out: dict[str, float] = {}
    for keyed, name in ((False, "invoke"), (True, "keyed")):
        before = {role: cpu_s(role) for role in procs}
        out[f"{name}_per_s"] = asyncio.run(pipelined(keyed))
        for role in procs:
            out[f"{name}_cpu_ms_{role}"] = (cpu_s(role) - before[role]) * 1000 / PIPELINED
    latencies = []
    for _ in range(SEQUENTIAL):
        t = time.perf_counter()
        assert gw.invoke("email_verification", "verify_email", VERIFY).ok
        latencies.append((time.perf_counter() - t) * 1000)
    out["p50_ms"] = median(latencies)
    return out


def main() -> Path:
    with local_ray() as ray, ExitStack() as stack:
        ledger = Path(tempfile.mkdtemp(prefix="aicmo-bench-replicas-")) / "ledger.jsonl"
        ledger.touch()
        namespaces = {}
        for label, count in VARIANTS.items():
            spec = stack.enter_context(gateway(capabilities(ledger), {"routing": {"replicas": count}},
                                               namespace=f"aicmo-bench-r{count}"))
            namespaces[label] = spec.namespace
        rounds: dict[str, list[dict[str, float]]] = {label: [] for label in VARIANTS}
        for r in range(ROUNDS):
            order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
            for label in order:
                ns = namespaces[label]
                row = kill_run(ray, ns, ledger, f"{ns}-k{r}")
                time.sleep(3)  # the killed router is back before the next measurement
                row.update(throughput(ray, ns, f"{ns}-t{r}"))
                rounds[label].append(row)
                print(label, {k: round(v, 2) for k, v in row.items()}, flush=True)

    med = {label: {k: median([row[k] for row in rows]) for k in rows[0]} for label, rows in rounds.items()}
    one, two = med["1 replica"], med["2 replicas"]
    invoke_ratio = paired_ratio(rounds, "2 replicas", "1 replica", "invoke_per_s")
    keyed_ratio = paired_ratio(rounds, "2 replicas", "1 replica", "keyed_per_s")
    p50_ratio = paired_ratio(rounds, "2 replicas", "1 replica", "p50_ms")
    lost = sum(row["lost"] + row["duplicated"] for rows in rounds.values() for row in rows)
    cpu = {label: sum(m[f"keyed_cpu_ms_{role}"] for role in ("driver", "routers", "providers")) for label, m in med.items()}
    headers = ["variant", "slowest within 3 s of kill (ms)", "p99 (ms)", ">500 ms", "lost", "dup",
               "invoke/s", "keyed/s", "p50 (ms)", "keyed CPU ms/call: driver / routers / provider"]
    table = [[label, f"{m['slowest_near_kill_ms']:.0f}", f"{m['p99_ms']:.0f}", f"{m['over_500ms']:.0f}",
              f"{m['lost']:.0f}", f"{m['duplicated']:.0f}", f"{m['invoke_per_s']:.0f}", f"{m['keyed_per_s']:.0f}",
              f"{m['p50_ms']:.2f}",
              f"{m['keyed_cpu_ms_driver']:.2f} / {m['keyed_cpu_ms_routers']:.2f} / {m['keyed_cpu_ms_providers']:.2f}"]
             for label, m in med.items()]
    router_cpu = one["keyed_cpu_ms_routers"]
    notes = [
        f"medians of {ROUNDS} alternating rounds; {RATE_PER_S} keyed sends/s for {RUN_S:.0f} s through the client, "
        f"router:email_sending killed at {KILL_AT_S:.0f} s (Ray restarts it)",
        f"2 replicas ÷ 1: invoke throughput {invoke_ratio:.2f}, keyed sends {keyed_ratio:.2f}, p50 {p50_ratio:.3f}",
        f"CPU per keyed send, all processes: {cpu['1 replica']:.2f} ms (1 replica), {cpu['2 replicas']:.2f} ms "
        f"(2): on 2 cores the ceiling is the machine's ({2000 / cpu['1 replica']:.0f}/s at full use), not one router's",
        f"on paper, routers at {router_cpu:.2f} ms CPU per keyed send each on a core of their own: one router caps a "
        f"capability at ~{1000 / router_cpu:.0f}/s; with one replica per node, 4 nodes ~{4000 / router_cpu:.0f}/s, "
        f"16 nodes ~{16000 / router_cpu:.0f}/s (providers and callers scaled alike)",
    ]
    targets = [
        target("replicas: slowest request within 3 s of a router kill, 2 replicas (ms)", two["slowest_near_kill_ms"],
               250.0, higher_is_better=False, fmt="{:.0f}",
               why=f"1 replica: {one['slowest_near_kill_ms']:.0f} ms"),
        target("replicas: lost + duplicated sends across all runs", lost, 0.0, higher_is_better=False, fmt="{:.0f}"),
        target("replicas: p50 of one call, 2 replicas ÷ 1", p50_ratio, 1.05, higher_is_better=False),
        target("replicas: keyed-send throughput, 2 replicas ÷ 1", keyed_ratio, None, higher_is_better=True),
        target("replicas: invoke throughput, 2 replicas ÷ 1", invoke_ratio, None, higher_is_better=True),
    ]
    return write_results("replicas", {"rounds": rounds, "medians": med}, table, headers,
                         title="Router replicas: a router's death, throughput, latency", notes=notes, targets=targets)


if __name__ == "__main__":
    print(main().read_text())
