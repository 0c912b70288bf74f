"""`python -m bench [NAME ...]`: run the benchmarks (all by default) and print their tables."""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = ["overhead", "batching", "store", "resilience", "tail", "startup", "http", "direct", "cost", "outliers",
              "replicas", "head_loss", "tracing", "delivery_events"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    for name in names:
        print(f"== {name}", flush=True)
        table = importlib.import_module(f"bench.{name}").main()
        print(table.read_text())
    print(f"all benchmarks done in {time.monotonic() - started:.0f}s; results in bench/results/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
