"""`make soak`: the gateway under steady load for a long time.

On a private local Ray (its own RAY_TMPDIR), a gateway of simulated
providers (sends with an outbox, CRM upserts, verifications; small latency,
a few failures) is driven first as hard as it goes, to measure saturation
throughput, then at 80% of it for `--minutes`. Saturation is the highest
steady pace it keeps for 30 s (answers within the probe, p99 under 250 ms),
tried from what 32 callers waiting on answers get through in a minute
(`--saturation-seconds`) down by 10% a step: a burst of a few seconds read
237 to 354 req/s on the same code, and 80% of a closed-loop figure was past
what it keeps at a steady pace. Every `--interval` seconds
it samples the resident memory (RSS) of every gateway actor process, the
p99 latency of the requests finished in the interval, and the CPU used per
request by each kind of process (gateway actors by kind, this driver,
PostgreSQL's and Ray's own) with how busy the machine was: where a latency
that rises spends its time. The verdict:

- RSS growth <= 10%: the total RSS of the gateway's actors at the end (mean
  of the last three samples) against the total after warm-up (the first
  fifth of the run, and at least until the probes' keys have expired and
  been pruned: the soak's own traffic is judged, not the probes');
- steady p99: the median interval p99 of the last third is at most 1.5x that
  of the first third after warm-up, and no interval's p99 passes 4x the
  overall median;
- served: at most 0.1% of the requests after warm-up failed (refusals of an
  overloaded router included: they would flatter the p99).

The state store is the embedded SQLite file (`--store sqlite`, the default)
or a real PostgreSQL server started for the run (`--store postgresql`,
tests/support/postgres.py). Results expire after a two-minute idempotency
window and ended journal and outbox rows are pruned after a minute, so the
store's size is sampled too: it must level off, not grow with the traffic.

Writes tests/faults/results/soak-<store>.json and .png (RSS, p99 and the
store's size over time) and prints the verdict; exits 0 when both hold.

    .venv/bin/python -m tests.faults.soak [--minutes 10] [--interval 10] [--store sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
NAMESPACE = "soak"
EMAIL = {"to": ["lead@example.com"], "subject": "Welcome", "text": "Hello"}
MIX = [("email_sending", "send_email", EMAIL, True), ("crm_sync", "upsert_contact", {"email": "lead@example.com"}, False),
       ("email_verification", "verify_email", {"email": "lead@example.com"}, False)]


# Short enough that expiry and pruning run many times within a soak.
WINDOW_S = 120.0
RETENTION_S = 60.0
PRUNE_INTERVAL_S = 20.0


def config(state_url: str, replicas: int = 2) -> dict[str, Any]:
    def sim(seed: int, failure_rate: float = 0.0) -> dict[str, Any]:
        return {"latency_ms": 4, "latency_jitter_ms": 3, "failure_rate": failure_rate, "seed": seed}

    return {
        "namespace": NAMESPACE,
        "state": {"url": state_url, "retention_s": RETENTION_S, "prune_interval_s": PRUNE_INTERVAL_S},
        # Admission on: an open-loop driver is the caller it is for (actors/policy/admission.py).
        "policy": {"routing": {"idempotency_window_s": WINDOW_S, "replicas": replicas,
                               "admission": {"enabled": True}}},
        "supervisor": {"check_interval_s": 30, "check_jitter_s": 5, "drain_interval_s": 2},
        "capabilities": {
            "email_sending": {"providers": [
                {"name": "primary", "adapter": "simulated", "settings": sim(1, 0.02)},
                {"name": "backup", "adapter": "simulated", "settings": sim(2)},
                {"name": "outbox", "adapter": "outbox"}]},
            "crm_sync": {"providers": [
                {"name": "primary", "adapter": "simulated", "settings": sim(3, 0.02)},
                {"name": "backup", "adapter": "simulated", "settings": sim(4)}]},
            "email_verification": {"providers": [
                {"name": "primary", "adapter": "simulated", "settings": sim(5)}]},
        },
    }


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float | None:
    """User and system CPU seconds a process has used (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


# Processes counted by their name: the soak's PostgreSQL server and Ray's own (the only ones a quiet machine runs).
SYSTEM_PROCESSES = {"postgres": "postgresql", "raylet": "ray", "gcs_server": "ray"}


def system_pids() -> list[tuple[str, int]]:
    """(kind, pid) of PostgreSQL's and Ray's processes on this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                kind = SYSTEM_PROCESSES.get((entry / "comm").read_text().strip())
            except OSError:
                continue
            if kind:
                found.append((kind, int(entry.name)))
    return found


def cpu_by_kind(actor_pids_by_name: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far, summed by what uses them: each kind of gateway
    actor, this driver, PostgreSQL's and Ray's processes. Differences between
    samples, per request, say where a rising latency's time goes."""
    totals: dict[str, float] = {}
    groups = [(name.split(":")[0], pid) for name, pid in actor_pids_by_name.items()]
    groups += [("driver", os.getpid()), *system_pids()]
    for kind, pid in groups:
        used = cpu_s(pid)
        if used is not None:
            totals[kind] = totals.get(kind, 0.0) + used
    return totals


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle so far (/proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / TICKS_PER_S


def actor_pids(ray: Any, names: set[str]) -> dict[str, int]:
    return {e["Name"]: e["Pid"] for e in ray._private.state.actors().values()
            if e.get("Name") in names and e["State"] == "ALIVE" and e.get("Pid")}


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


SEND_STEP_S = 0.002


class GcPauses:
    """The driver's garbage collections, timed (gc.callbacks)."""

    def __init__(self) -> None:
        self._began = 0.0
        self._longest_s = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self._longest_s = max(self._longest_s, time.perf_counter() - self._began)

    def longest(self) -> float:
        """ms, since last asked."""
        found, self._longest_s = self._longest_s, 0.0
        return found * 1000


class Driver:
    """Calls through the Python client, as users make them: spread over the
    router replicas of each capability."""

    def __init__(self, ray: Any):
        from actors.client import Gateway

        self.ray = ray
        self.gateway = Gateway(NAMESPACE)
        self.n = 0
        self.done: list[tuple[float, float, bool]] = []   # (finished at, latency ms, ok)
        self.errors: dict[str, int] = {}
        self.stall_s = 0.0
        self.gc_pauses = GcPauses()

    async def one(self) -> None:
        cap, method, payload, keyed = MIX[self.n % len(MIX)]
        self.n += 1
        key = f"soak-{self.n}" if keyed else None
        started = time.monotonic()
        try:
            res = await self.gateway.invoke_async(cap, method, payload, idempotency_key=key)
            ok = res.ok
            if not ok:
                kind = str(res.error.kind) if res.error else "failed"
                self.errors[kind] = self.errors.get(kind, 0) + 1
        except Exception as exc:  # noqa: BLE001 - counted, the soak goes on
            ok = False
            self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
        now = time.monotonic()
        self.done.append((now, (now - started) * 1000, ok))

    async def closed_loop(self, workers: int, seconds: float) -> float:
        """Requests per second with `workers` callers, each sending as soon as its last one is answered."""
        stop = time.monotonic() + seconds
        before = len(self.done)

        async def worker() -> None:
            while time.monotonic() < stop:
                await self.one()

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return (len(self.done) - before) / (time.monotonic() - started)

    async def open_loop(self, rate_per_s: float, seconds: float, on_tick: Any, tick_s: float) -> None:
        """Sends at `rate_per_s` on a fixed schedule, whatever the answers;
        awaits on_tick(now) every tick_s, in a task of its own: a sample must
        not stall the loop that sends and answers (it would show as latency)."""
        started = previous = time.monotonic()
        next_tick = started + tick_s
        sent = 0
        tasks: set[asyncio.Task[None]] = set()
        ticks: list[asyncio.Task[None]] = []
        while (now := time.monotonic()) < started + seconds:
            self.stall_s = max(self.stall_s, now - previous - SEND_STEP_S)
            previous = now
            due = int((now - started) * rate_per_s) - sent
            for _ in range(max(0, due)):
                task = asyncio.ensure_future(self.one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            if now >= next_tick:
                ticks.append(asyncio.ensure_future(on_tick(now)))
                next_tick += tick_s
            await asyncio.sleep(SEND_STEP_S)
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        await asyncio.gather(*ticks)
        await on_tick(time.monotonic())

    def stalls(self) -> tuple[float, float]:
        """The longest turn of the driver's loop and its longest garbage
        collection since last asked (ms): a stall of the caller's own process
        shows as latency of every call in flight."""
        found = (round(self.stall_s * 1000, 1), round(self.gc_pauses.longest(), 1))
        self.stall_s = 0.0
        return found


def verdict(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    steady = [s for s in samples if s["t_s"] > warmup_s and s["p99_ms"] is not None]
    if len(steady) < 3:
        return {"ok": False, "why": "too few samples after warm-up"}
    base = steady[0]["rss_total_mb"]
    end = statistics.mean(s["rss_total_mb"] for s in steady[-3:])
    growth = (end - base) / base
    third = max(1, len(steady) // 3)
    first = statistics.median(s["p99_ms"] for s in steady[:third])
    last = statistics.median(s["p99_ms"] for s in steady[-third:])
    overall = statistics.median(s["p99_ms"] for s in steady)
    worst = max(s["p99_ms"] for s in steady)
    rss_ok = growth <= 0.10
    p99_ok = last <= 1.5 * first and worst <= 4 * overall
    answered = sum(s["answered"] for s in steady)
    failed = sum(s["failed"] for s in steady)
    served_ok = failed <= 0.001 * answered
    return {"ok": rss_ok and p99_ok and served_ok, "rss_ok": rss_ok, "p99_ok": p99_ok, "served_ok": served_ok,
            "failed_after_warmup": failed, "answered_after_warmup": answered, "rss_after_warmup_mb": round(base, 1),
            "rss_end_mb": round(end, 1), "rss_growth": round(growth, 4), "p99_first_third_ms": round(first, 2),
            "p99_last_third_ms": round(last, 2), "p99_median_ms": round(overall, 2), "p99_worst_ms": round(worst, 2),
            "p99_last_over_first": round(last / first, 3)}


def cpu_ceiling(samples: list[dict[str, Any]], warmup_s: float, rate_per_s: float, cores: int) -> dict[str, Any]:
    """What the CPU figures say of the pace: all processes' CPU per request
    after warm-up (the median of the intervals' sums), the pace at which
    that would fill every core, and the share of it the soak ran at: how
    near the machine's ceiling the latencies were measured."""
    sums = [sum(s["cpu_ms_per_request"].values()) for s in samples
            if s["t_s"] > warmup_s and s.get("cpu_ms_per_request")]
    if not sums:
        return {}
    per_request = statistics.median(sums)
    ceiling = cores * 1000 / per_request
    return {"cpu_ms_per_request": round(per_request, 2), "ceiling_per_s": round(ceiling, 1),
            "share_of_ceiling": round(rate_per_s / ceiling, 3)}


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    t = [s["t_s"] / 60 for s in samples]
    fig, (ax1, ax2, ax5, ax4) = plt.subplots(4, 1, figsize=(10, 12), sharex=True)
    kinds = sorted({k for s in samples for k in s["rss_by_kind_mb"]})
    for kind in kinds:
        ax1.plot(t, [s["rss_by_kind_mb"].get(kind, 0) for s in samples], label=f"{kind} actors")
    ax1.plot(t, [s["rss_total_mb"] for s in samples], label="all gateway actors", linewidth=2, color="black")
    ax1.axvline(report["warmup_s"] / 60, color="grey", linestyle=":", label="end of warm-up")
    ax1.set_ylabel("RSS (MB)")
    v = report["verdict"]
    ax1.set_title(f"soak: {report['rate_per_s']:.0f} req/s (80% of {report['saturation_per_s']:.0f}) for "
                  f"{report['minutes']:g} min on {report.get('store', 'sqlite')}, {report.get('replicas', 1)} router replicas; RSS growth {v.get('rss_growth', 0) * 100:.1f}%, "
                  f"p99 last/first third {v.get('p99_last_over_first', 0):.2f}: {'PASS' if v['ok'] else 'FAIL'}")
    ax1.legend(loc="upper left", fontsize=8)
    ax2.plot(t, [s["p99_ms"] for s in samples], label="p99", color="tab:red")
    ax2.plot(t, [s["p50_ms"] for s in samples], label="p50", color="tab:blue")
    ax2.set_ylabel("latency (ms)")
    for kind in sorted({k for s in samples for k in s.get("cpu_ms_per_request", {})}):
        ax5.plot(t, [s.get("cpu_ms_per_request", {}).get(kind) for s in samples], label=kind)
    ax5.set_ylabel("CPU ms per request")
    ax5.legend(loc="upper left", fontsize=8)
    ax6 = ax5.twinx()
    ax6.plot(t, [s.get("machine_busy") for s in samples], label="machine busy", color="black", linestyle=":")
    ax6.set_ylabel("busy (fraction of all cores)")
    ax6.set_ylim(0, 1.05)
    ax6.legend(loc="upper right", fontsize=8)
    ax4.plot(t, [s.get("store_mb") for s in samples], label=f"{report.get('store', 'sqlite')} store size",
             color="tab:purple")
    ax4.set_ylabel("store (MB)")
    ax4.set_xlabel("minutes")
    ax4.legend(loc="upper left", fontsize=8)
    ax3 = ax2.twinx()
    ax3.plot(t, [s["rate_per_s"] for s in samples], label="answered req/s", color="tab:green", alpha=0.5)
    ax3.set_ylabel("req/s")
    ax2.legend(loc="upper left", fontsize=8)
    ax3.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# A pace holds when nearly all is answered within the probe and its p99 stays
# within this: a queue that grows shows in both.
PROBE_S = 30.0
HOLDS_P99_MS = 250.0
HOLDS_ANSWERED = 0.97


def holds(finished: list[tuple[float, float, bool]], rate_per_s: float, seconds: float) -> tuple[bool, dict[str, Any]]:
    """Whether an open-loop probe at `rate_per_s` held: its answers (finished
    at, latency ms, ok) within the probe, its p99 and failures."""
    latencies = [ms for _, ms, _ in finished]
    answered = len(finished) / (rate_per_s * seconds)
    worst = p99(latencies) or float("inf")
    failed = sum(1 for *_, ok in finished if not ok)
    ok = answered >= HOLDS_ANSWERED and worst <= HOLDS_P99_MS and failed <= 0.001 * max(1, len(finished))
    return ok, {"rate_per_s": round(rate_per_s, 1), "answered": round(answered, 3), "p99_ms": round(worst, 1),
                "failed": failed, "held": ok}


async def no_sample(now: float) -> None:
    return None


async def sustained_rate(driver: Driver, start: float, seconds: float,
                         cpu_now: Any = dict) -> tuple[float, list[dict[str, Any]]]:
    """The highest pace, from `start` down by 10% a step, that an open-loop
    driver keeps for `seconds`. Callers that wait on answers (a closed loop)
    get more through than the same machine keeps at a steady pace: their
    calls come in bunches that every process handles a few at a wake-up, and
    80% of the closed-loop figure was past what it kept (p99 of seconds).
    Each probe also records the CPU per request over every process
    (`cpu_now`: CPU seconds used so far, by kind): it falls as the pace
    rises (calls to a provider are batched), so a probe's figure is not the
    soak's."""
    probes: list[dict[str, Any]] = []
    rate = start
    while True:
        driver.done.clear()
        cpu_before = await asyncio.to_thread(cpu_now)
        began = time.monotonic()
        await driver.open_loop(rate, seconds, no_sample, seconds)
        cpu_after = await asyncio.to_thread(cpu_now)
        finished = [d for d in driver.done if d[0] <= began + seconds + 1.0]
        ok, probe = holds(finished, rate, seconds)
        if cpu_after:
            used = sum(cpu_after.values()) - sum(cpu_before.get(kind, 0.0) for kind in cpu_after)
            probe["cpu_ms_per_request"] = round(1000 * used / max(1, len(driver.done)), 2)
        probes.append(probe)
        print(f"  probe {probe}", flush=True)
        if ok or rate < 10:
            return rate, probes
        rate *= 0.9
        await asyncio.sleep(5)     # the backlog clears


async def soak(ray: Any, minutes: float, interval_s: float, saturation_s: float,
               store_mb: Any = lambda: None) -> dict[str, Any]:
    from actors.deploy.gateway import gateway_actor_names

    names = set(gateway_actor_names(NAMESPACE))
    driver = Driver(ray)
    await driver.closed_loop(8, 3.0)  # warm the actors and their connections up
    closed = await driver.closed_loop(32, saturation_s)
    saturation, probes = await sustained_rate(driver, closed, PROBE_S,
                                              cpu_now=lambda: cpu_by_kind(actor_pids(ray, names)))
    rate = 0.8 * saturation
    print(f"saturation {saturation:.0f} req/s sent at a steady pace (32 callers waiting on answers: {closed:.0f}); "
          f"soaking at {rate:.0f} req/s for {minutes:g} min", flush=True)

    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    t0_unix = time.time()   # where t_s = 0 falls in a server's log
    last = [t0]
    driver.done.clear()
    total = [0]

    def measure() -> tuple[dict[str, int], dict[str, int | None], Any, dict[str, float], float]:
        pids = actor_pids(ray, names)
        return (pids, {name: rss_kb(pid) for name, pid in pids.items()}, store_mb(), cpu_by_kind(pids),
                machine_busy_s())

    cpu_before = [cpu_by_kind(actor_pids(ray, names)), machine_busy_s()]

    async def tick(now: float) -> None:
        finished = list(driver.done)
        driver.done.clear()
        total[0] += len(finished)
        stall_ms, gc_ms = driver.stalls()
        since, last[0] = now - last[0], now
        # The GCS's actor list, /proc and the store's size, off the loop that sends (a PostgreSQL size is a connection).
        pids, rss, store, cpu, busy = await asyncio.to_thread(measure)
        (cpu_was, busy_was), cpu_before[:] = cpu_before, (cpu, busy)
        # A kind's CPU per answered request in the interval (a process restarted in it counts from 0).
        cpu_ms_per_request = {kind: round(1000 * (used - cpu_was.get(kind, 0.0)) / max(1, len(finished)), 2)
                              for kind, used in cpu.items()}
        by_kind: dict[str, float] = {}
        for name, kb in rss.items():
            if kb is not None:
                kind = name.split(":")[0]
                by_kind[kind] = by_kind.get(kind, 0.0) + kb / 1024
        latencies = [ms for _, ms, _ in finished]
        sample = {
            "t_s": round(now - t0, 1), "answered": len(finished), "failed": sum(1 for *_, ok in finished if not ok),
            "rate_per_s": round(len(finished) / max(1e-9, since), 1),
            "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
            "p99_ms": round(p99(latencies), 2) if latencies else None,
            "rss_total_mb": round(sum(by_kind.values()), 1), "rss_by_kind_mb": {k: round(v, 1) for k, v in by_kind.items()},
            "actors": len(pids), "store_mb": store, "driver_stall_ms": stall_ms, "driver_gc_ms": gc_ms,
            "cpu_ms_per_request": cpu_ms_per_request,
            "machine_busy": round((busy - busy_was) / max(1e-9, since) / (os.cpu_count() or 1), 3),
        }
        samples.append(sample)
        print(f"  {sample['t_s']:7.1f}s  resent {driver.gateway.resent}  {sample['rate_per_s']:6.0f} req/s  p50 {sample['p50_ms']} ms  "
              f"p99 {sample['p99_ms']} ms  RSS {sample['rss_total_mb']} MB ({sample['actors']} actors)  "
              f"store {sample['store_mb']} MB  driver stall {stall_ms} ms (gc {gc_ms})  "
              f"busy {sample['machine_busy']:.0%}  CPU ms/request {cpu_ms_per_request}", flush=True)

    await driver.open_loop(rate, minutes * 60, tick, interval_s)
    # Warm-up lasts until the probes' keys (sent at up to twice this pace) have
    # expired and been pruned: what follows is the soak's own traffic.
    warmup_s = max(interval_s, minutes * 60 / 5, WINDOW_S + PRUNE_INTERVAL_S + interval_s)
    return {"minutes": minutes, "interval_s": interval_s, "saturation_per_s": round(saturation, 1),
            "closed_loop_per_s": round(closed, 1), "probes": probes,
            "rate_per_s": round(rate, 1), "warmup_s": warmup_s, "t0_unix": round(t0_unix, 3), "samples": samples,
            "errors": driver.errors, "requests": total[0], "resent": driver.gateway.resent,
            "verdict": verdict(samples, warmup_s)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to soak at 80%% of saturation (default 10)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--saturation-seconds", type=float, default=60.0,
                        help="how long saturation is measured (default 60: its background work included)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where soak-<store>.json and .png go")
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("REPLICAS", "2")),
                        help="router replicas per capability (default: $REPLICAS, else 2)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default=os.environ.get("STORE", "sqlite"),
                        help="the state store (default: $STORE, else sqlite)")
    args = parser.parse_args(argv)
    if "RAY_TMPDIR" not in os.environ:
        os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="aicmo-soak-", dir="/tmp")
    import ray

    from actors.config import parse_config
    from actors.deploy.gateway import deploy
    from actors.specs import build_spec

    state_dir = tempfile.mkdtemp(prefix="aicmo-soak-state-")
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, state_dir, ignore_errors=True)
        args.out.mkdir(parents=True, exist_ok=True)
        state_url, store_mb = _store(stack, args.store, state_dir, args.out)
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        stack.callback(ray.shutdown)
        deploy(build_spec(parse_config(config(state_url, args.replicas), "<soak>", env={})), detached=False)
        report = asyncio.run(soak(ray, args.minutes, args.interval, args.saturation_seconds, store_mb))
    report["cpu"] = cpu_ceiling(report["samples"], report["warmup_s"], report["rate_per_s"], os.cpu_count() or 1)
    report["store"] = args.store
    report["replicas"] = args.replicas
    # The machine's load around the run: other work on it shows in the latencies.
    report["run"] = {"id": uuid.uuid4().hex[:8], "at": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpus": os.cpu_count(),
                     "loadavg_before": [round(x, 2) for x in load_before],
                     "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"soak-{args.store}"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    plot(report, args.out / f"{name}.png")
    v = report["verdict"]
    print(json.dumps(v, indent=2))
    if report["cpu"]:
        c = report["cpu"]
        print(f"CPU: {c['cpu_ms_per_request']} ms per request over every process, which fills {os.cpu_count()} cores "
              f"at {c['ceiling_per_s']:.0f} req/s; soaked at {c['share_of_ceiling']:.0%} of that")
    busiest = max(report["run"]["loadavg_before"][0], report["run"]["loadavg_after"][0])
    if busiest > 1.5 * (os.cpu_count() or 1):
        print(f"note: the machine was busy (load average up to {busiest:.1f} on {os.cpu_count()} CPUs): "
              "the latencies measure other work too; run the soak on a quiet machine to judge p99")
    print(f"{'PASS' if v['ok'] else 'FAIL'}: RSS growth {v.get('rss_growth', float('nan')) * 100:.1f}% (<= 10%), "
          f"p99 {v.get('p99_first_third_ms')} -> {v.get('p99_last_third_ms')} ms (steady: last third <= 1.5x first); "
          f"store {report['store']}: {_size(report, 0)} -> {_size(report, -1)} MB; "
          f"{report['requests']} requests, errors {report['errors']}, resent {report['resent']}; plot {args.out / (name + '.png')}")
    return 0 if v["ok"] else 1


def _store(stack: contextlib.ExitStack, kind: str, state_dir: str, out: Path) -> tuple[str, Any]:
    """The state URL, and a function giving the store's size on disk in MB.
    A PostgreSQL server's log is kept in `out` (soak-postgresql-server.log)."""
    if kind == "sqlite":
        def sqlite_mb() -> float:
            files = Path(state_dir).glob("**/state.db*")
            return round(sum(f.stat().st_size for f in files if f.is_file()) / 2**20, 2)

        return state_dir, sqlite_mb
    from tests.support.postgres import PostgresServer

    # Its log names what a stall on its side would be: statements over 100 ms, autovacuum runs, checkpoints.
    server = stack.enter_context(PostgresServer(settings={
        "log_min_duration_statement": 100, "log_autovacuum_min_duration": 0, "log_checkpoints": "on",
        "log_line_prefix": "'%m [%p] '"}))
    stack.callback(lambda: shutil.copyfile(server.log_file, out / "soak-postgresql-server.log")
                   if server.log_file.exists() else None)
    db = server.create_database("soak")

    def postgres_mb() -> float:
        import psycopg

        with psycopg.connect(db.conninfo) as conn:
            (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return round(size / 2**20, 2)

    return db.url.replace(f"{server.user}@", f"{server.user}:{db.password}@", 1), postgres_mb


def _size(report: dict[str, Any], i: int) -> Any:
    steady = [s for s in report["samples"] if s.get("store_mb") is not None]
    return steady[i]["store_mb"] if steady else None


if __name__ == "__main__":
    sys.exit(main())
