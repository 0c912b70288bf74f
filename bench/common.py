"""What every benchmark shares: a private local Ray, alternating rounds,
percentiles, and writing results as JSON, a Markdown table and a PNG."""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[Any]:
    import ray

    # address="local": a private cluster, never a stale one from /tmp/ray.
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False, namespace="aicmo-bench")
    try:
        yield ray
    finally:
        ray.shutdown()


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


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def write_results(name: str, data: dict[str, Any], table: list[list[str]], headers: list[str],
                  plot: Callable[[Path], None] | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    md = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join(row) + " |" for row in table]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    if plot is not None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            plot(RESULTS / f"{name}.png")
        except ImportError:
            print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
    return RESULTS / f"{name}.md"


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "NOT met"
