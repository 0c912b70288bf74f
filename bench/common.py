"""What every benchmark shares: a private local Ray, a gateway deployed on it
with its state in a temporary directory, alternating rounds, a driver that
keeps N requests in flight, percentiles, and writing results as JSON, a
Markdown table and a PNG, plus `summary.md`, which gathers every benchmark's
table and every target."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
NAMESPACE = "aicmo-bench"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval of a success rate (Wilson score)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


# The most actors a benchmark has at once: the startup benchmark's default
# gateway (about 30) next to as many bare actors, plus a few.
BENCH_ACTORS = 64


@contextmanager
def local_ray(num_cpus: int = 2, runtime_env: dict[str, Any] | None = None) -> Iterator[Any]:
    import ray

    from actors.deploy.local_ray import init_local

    # address="local": a private cluster, never a stale one from /tmp/ray; sized so
    # Ray's "worker processes have been started" warning does not fire for our actors.
    init_local(ray, actors=BENCH_ACTORS, num_cpus=num_cpus, include_dashboard=False, logging_level=logging.ERROR,
               log_to_driver=False, namespace=NAMESPACE, runtime_env=runtime_env)
    try:
        yield ray
    finally:
        ray.shutdown()


def bench_config(capabilities: dict[str, Any], policy: dict[str, Any] | None = None, *,
                 state_dir: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    # state_dir: a directory, or any state.url (a PostgreSQL one, say)
    """A gateway config for a benchmark: no periodic self-checks or outbox
    draining (they would add load at random moments), state in `state_dir`."""
    return {
        "namespace": namespace,
        "state": {"url": state_dir},
        "supervisor": {"check_interval_s": 0, "drain_interval_s": 0},
        "policy": policy or {},
        "capabilities": capabilities,
    }


@contextmanager
def gateway(capabilities: dict[str, Any], policy: dict[str, Any] | None = None,
            namespace: str = NAMESPACE, state_url: str | None = None, extra: dict[str, Any] | None = None) -> Iterator[Any]:
    """Deploy a gateway on the current Ray (non-detached) with its durable
    state in a temporary directory (or at `state_url`); yield its spec;
    remove it afterwards. `extra`: more top-level config sections (telemetry, ...)."""
    from actors.config import parse_config
    from actors.deploy.gateway import deploy, teardown
    from actors.specs import build_spec

    state_dir = tempfile.mkdtemp(prefix="aicmo-bench-state-")
    try:
        cfg = {**bench_config(capabilities, policy, state_dir=state_url or state_dir, namespace=namespace), **(extra or {})}
        spec = build_spec(parse_config(cfg, "<bench>", env={}))
        deploy(spec, detached=False)
        try:
            yield spec
        finally:
            teardown(spec.namespace)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def simulated(name: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "adapter": "simulated", "settings": settings}


async def drive(submit: Callable[[int], Awaitable[Any]], n: int, concurrency: int) -> tuple[list[tuple[float, Any]], float]:
    """Run `submit(i)` for i in range(n), keeping `concurrency` in flight.
    Returns [(latency_ms, result)] in order of i, and the wall time in s."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> tuple[float, Any]:
        async with sem:
            t = time.perf_counter()
            result = await submit(i)
            return (time.perf_counter() - t) * 1000, result

    started = time.perf_counter()
    out = await asyncio.gather(*(one(i) for i in range(n)))
    return list(out), time.perf_counter() - started


def alternate(variants: dict[str, Callable[[], dict[str, float]]], rounds: int) -> dict[str, list[dict[str, float]]]:
    """Run each variant once per round, in a rotating order, so drift on the
    machine (another process, thermal state) hits all variants alike."""
    names = list(variants)
    out: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            out[name].append(variants[name]())
    return out


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = rounds[0].keys() if rounds else []
    return {k: median([r[k] for r in rounds]) for k in keys}


def paired_ratio(rounds: dict[str, list[dict[str, float]]], a: str, b: str, key: str) -> float:
    """Median over rounds of a[key] / b[key] within the same round: variants
    of one round ran back to back, so slow drift of the machine cancels."""
    return median([ra[key] / rb[key] for ra, rb in zip(rounds[a], rounds[b], strict=True)])


def machine() -> dict[str, Any]:
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_at_end": load}


def target(name: str, measured: float, limit: float | None, higher_is_better: bool, fmt: str = "{:.3f}",
           why: str = "") -> dict[str, Any]:
    """One target, as the summary's targets table shows it; `limit=None`:
    a figure the issue asks for without a bound (reported, never "met")."""
    if limit is None:
        return {"target": name, "measured": fmt.format(measured), "limit": "—", "value": measured, "met": None,
                "why": why}
    met = bool(measured >= limit if higher_is_better else measured <= limit)
    limit_text = ("≥ " if higher_is_better else "≤ ") + fmt.format(limit)
    return {"target": name, "measured": fmt.format(measured), "limit": limit_text, "value": measured, "met": met, "why": why}


def write_results(name: str, data: dict[str, Any], table: list[list[str]], headers: list[str],
                  plot: Callable[[Path], None] | None = None, *, title: str = "", notes: list[str] | None = None,
                  targets: list[dict[str, Any]] | None = None) -> Path:
    """Write `<name>.json`, `<name>.md` (the table, then the notes) and
    `<name>.png`, then regenerate `summary.md` from every result present."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "title": title or name, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine(), "targets": targets or [], "notes": notes or [], **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    md = [markdown_table(headers, table)]
    if notes:
        md += ["", *(f"- {n}" for n in notes)]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    if plot is not None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            plot(RESULTS / f"{name}.png")
        except ImportError:
            print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
    write_summary()
    return RESULTS / f"{name}.md"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_summary() -> Path:
    """`summary.md`: the targets of every benchmark in one table, then each
    benchmark's own table and notes, in the order `python -m bench` runs them."""
    from bench.__main__ import BENCHMARKS

    found = []
    for name in BENCHMARKS:
        path = RESULTS / f"{name}.json"
        if path.exists():
            found.append((name, json.loads(path.read_text())))
    rows = []
    for name, data in found:
        for t in data.get("targets", []):
            met = {True: "met", False: "**not met**", None: "reported"}[t["met"]]
            rows.append([name, t["target"], t["limit"], t["measured"], met, t.get("why", "")])
    out = ["# Benchmark results", "",
           "Each benchmark runs its baselines and the gateway in the same process run, alternating, "
           "on a shared 2-core machine: ratios within a run mean more than absolute times. "
           "`make bench` (or `python -m bench [NAME ...]`) regenerates this file.", "",
           "## Targets", "", markdown_table(["benchmark", "target", "limit", "measured", "", "why"], rows)]
    for name, data in found:
        md = (RESULTS / f"{name}.md").read_text().rstrip()
        load = data.get("machine", {}).get("load_avg_at_end") or []
        stamp = f"_{data.get('at', '')}; load average at the end (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in load)}_"
        out += ["", f"## {data.get('title') or name}", "", stamp, "", md]
        if (RESULTS / f"{name}.png").exists():
            out += ["", f"![{name}]({name}.png)"]
    path = RESULTS / "summary.md"
    path.write_text("\n".join(out) + "\n")
    return path


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "NOT met"
