"""Traces (issue 23): what tracing costs the router, in one run.

Three variants of one gateway (one simulated provider), each on a private
local Ray:

- "off": this build, no `telemetry.traces` (no span, no SDK on the path);
- "on": this build, sampling 1.0, exporting over OTLP/HTTP to a collector on
  loopback, in a process of its own that only counts the trace ids it
  receives (tests/support/otlp.py);
- "before": the build before issue 23 (commit BASELINE, fd519d6), extracted
  from this repository's history with `git archive` into a temporary
  directory and run by bench/tracing_baseline.py in a process of its own,
  with its own Ray, whose workers import that build (checked: the router
  says where its `actors` came from). Not this build with telemetry
  bypassed: "off" already bypasses it with one test per request, and what
  the issue asks is what that costs against code without it. That build
  also predates issue 22 (merged with 23), so the figure is an upper bound
  of what tracing off costs. Without git history (an sdist) it is skipped.

First, before any Ray, the CPU and the Python calls one request costs
in-process, on, off and before (bench/tracing_cpu.py): steadier than wall
clock (the calls do not move at all). Then per round,
each variant: (1) the p50 of one call (sequential keyed sends through the
client: the router's root span, its store spans, an attempt span, the
provider's span); (2) throughput, keyed sends pipelined (64 in flight). All
three are warmed with one round first; rounds rotate the order (bench/common.py)
so drift hits all alike; ratios are paired within a round.

Targets: on ÷ off, p50 ≤ 1.10 and throughput ≥ 0.90; off ÷ before, p50 ≤ 1.02
and throughput ≥ 0.98.

Where the cost of "on" went, and what was cut (measured in-process:
the router and provider cores, unit level, far steadier than wall clock on
a shared machine; 2 cores under load, so the µs are rough):
- the SDK's Span validated every attribute under a lock and asked the
  sampler again for each child: actors/telemetry/spans.py records spans
  itself (the sampler asked once, at the root) and hands the processors the
  SDK's ReadableSpan, a third of the cost;
- the exporter's encoder built a protobuf object per attribute and hashed
  the resource through JSON per span, in the export thread but under the
  router's GIL: actors/telemetry/wire.py writes the same message at a fifth
  of the cost (repeating attributes encoded once);
- together: what tracing adds per request in-process went from ~+650 µs to
  ~+200 µs (off ~850 µs); in Python calls, on ÷ off is 1.44;
- this benchmark's collector decoded every attribute of every span on the
  same two cores: it now reads trace ids only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.common import alternate, gateway, local_ray, median, paired_ratio, target, write_results
from bench.tracing_baseline import PIPELINED, SEQUENTIAL, capabilities, measure, router_module

ROUNDS = 5  # wall clock on a shared machine varies by a third between rounds: the median of 5
BASELINE = "fd519d6"  # the build before issue 23 (the merge of issues 22 and 23 is f11abf7)
REPO = Path(__file__).resolve().parents[1]


class Before:
    """The build before issue 23, serving rounds from a process of its own (bench/tracing_baseline.py)."""

    def __init__(self, tree: Path):
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
        # Run by path, not as `python FILE`: that would put bench/ first on sys.path (bench/http.py is not http).
        runner = f"import runpy; runpy.run_path({str(Path(__file__).with_name('tracing_baseline.py'))!r}, run_name='__main__')"
        self._process = subprocess.Popen([sys.executable, "-c", runner], cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.actors_from = json.loads(self._answer("READY"))
        if not (self.actors_from or "").startswith(str(tree)):
            self.close()
            raise RuntimeError(f"the baseline's router runs actors from {self.actors_from}, not from {tree}")

    def _answer(self, tag: str) -> str:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith(tag + " "):
                return line[len(tag) + 1:]
        raise RuntimeError(f"the baseline process ended (exit {self._process.wait()}) before {tag}")

    def measure(self, prefix: str) -> dict[str, float]:
        assert self._process.stdin is not None
        self._process.stdin.write(prefix + "\n")
        self._process.stdin.flush()
        return json.loads(self._answer("ROUND"))

    def close(self) -> None:
        try:
            if self._process.stdin is not None:
                self._process.stdin.write("\n")
                self._process.stdin.flush()
            self._process.wait(120)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()


def baseline_tree(stack: ExitStack) -> Path | None:
    """BASELINE extracted into a temporary directory; None without this repository's history."""
    tree = Path(tempfile.mkdtemp(prefix="aicmo-bench-before-"))
    stack.callback(shutil.rmtree, tree, True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", BASELINE], capture_output=True)
    if archive.returncode != 0:
        print(f"tracing: no baseline ({archive.stderr.decode().strip()[:200]})", flush=True)
        return None
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def sdk_loaded(ray: Any, namespace: str) -> bool:
    """Whether the router of `namespace` has imported the OpenTelemetry SDK's tracing."""
    return router_module(ray, namespace, "opentelemetry.sdk.trace") is not None


def main() -> Path:
    from bench import tracing_cpu
    from tests.support.otlp import CollectorProcess

    with ExitStack() as stack:
        tree = baseline_tree(stack)
        in_process = tracing_cpu.main(ROUNDS, tree)  # before any Ray: the steadier figures
        cpu, calls = in_process["cpu"], {label: values[0] for label, values in in_process["calls"].items()}
        collector = CollectorProcess()  # in a process of its own: its work does not take the driver's GIL
        stack.callback(collector.close)
        before = Before(tree) if tree is not None else None
        if before is not None:
            stack.callback(before.close)
        ray = stack.enter_context(local_ray())
        namespaces = {}
        traced = {"telemetry": {"traces": {"endpoint": collector.endpoint, "sampling_ratio": 1.0}}}
        for label in ("off", "on"):
            spec = stack.enter_context(gateway(capabilities(), namespace=f"aicmo-bench-trace-{label}",
                                               extra=traced if label == "on" else None))
            namespaces[label] = spec.namespace
        runs = {label: 0 for label in ("off", "on", "before")}

        def variant(label: str) -> Any:
            def run() -> dict[str, float]:
                prefix = f"{label}-{runs[label]}"
                runs[label] += 1
                row = before.measure(prefix) if label == "before" else measure(namespaces[label], prefix)
                print(label, {k: round(v, 2) for k, v in row.items()}, flush=True)
                return row
            return run

        variants = {label: variant(label) for label in namespaces}
        if before is not None:
            variants["before"] = variant("before")  # it warmed itself up when it started
        for label in namespaces:
            variants[label]()  # warm-up, not kept
        rounds = alternate(variants, ROUNDS)
        loaded = {label: sdk_loaded(ray, ns) for label, ns in namespaces.items()}
        sent = (ROUNDS + 1) * (SEQUENTIAL + PIPELINED)
        deadline = time.monotonic() + 30  # the last batches leave within a second or two
        while collector.traces < sent and time.monotonic() < deadline:
            time.sleep(0.2)
        traces, spans = collector.traces, collector.spans
        actors_from = before.actors_from if before is not None else None

    # CPU time: the least of the rounds (other processes only ever add to it, through caches and clocks).
    cpu_best = {label: min(values) for label, values in cpu.items()}
    cpu_ratio = cpu_best["on"] / cpu_best["off"]

    med = {label: {k: median([row[k] for row in rows]) for k in rows[0]} for label, rows in rounds.items()}
    p50_ratio = paired_ratio(rounds, "on", "off", "p50_ms")
    tput_ratio = paired_ratio(rounds, "on", "off", "per_s")
    headers = ["variant", "p50 of one keyed send (ms)", "keyed sends/s (64 in flight)"]
    table = [[label, f"{m['p50_ms']:.2f}", f"{m['per_s']:.0f}"] for label, m in med.items()]
    notes = [
        f"medians of {ROUNDS} rotating rounds after one warm-up; {SEQUENTIAL} sequential and {PIPELINED} pipelined "
        "keyed sends per round and variant, one simulated provider (3 ms)",
        f"on ÷ off: p50 {p50_ratio:.3f}, throughput {tput_ratio:.3f}",
        f"the loopback collector received {traces} traces ({spans} spans) of {sent} requests traced",
        f"OpenTelemetry SDK imported by the router: off {loaded['off']}, on {loaded['on']}",
        f"CPU per request in-process (router and provider cores, no Ray; bench/tracing_cpu.py; the least of "
        f"{len(cpu['off'])} rounds): off {cpu_best['off']:.0f} µs, on {cpu_best['on']:.0f} µs, on ÷ off "
        f"{cpu_ratio:.3f} (an upper bound: Ray's own cost per request, the same on and off, is absent)",
    ]
    notes.append(f"Python calls per request in-process (counted: no load changes them): off {calls['off']:.0f}, "
                 f"on {calls['on']:.0f}, on ÷ off {calls['on'] / calls['off']:.3f}")
    if "before" in cpu:
        notes.append(f"the build before issue 23 in-process: CPU {cpu_best['before']:.0f} µs, calls "
                     f"{calls['before']:.0f} per request; off ÷ before: CPU {cpu_best['off'] / cpu_best['before']:.3f}, "
                     f"calls {calls['off'] / calls['before']:.3f} (that build also lacks issue 22)")
    targets = [
        target("tracing: p50 of one call, on (sampling 1.0) ÷ off", p50_ratio, 1.10, higher_is_better=False),
        target("tracing: throughput, on ÷ off", tput_ratio, 0.90, higher_is_better=True),
        target("tracing: CPU per request in-process, on ÷ off", cpu_ratio, None, higher_is_better=False,
               why="steady on a loaded machine; an upper bound of the cost through the actors"),
    ]
    data: dict[str, Any] = {"rounds": rounds, "medians": med, "traces_received": traces, "spans_received": spans,
                            "sdk_loaded": loaded, "baseline": BASELINE, "baseline_actors_from": actors_from,
                            "cpu_us_per_request": cpu, "calls_per_request": calls}
    if "before" in rounds:
        off_p50 = paired_ratio(rounds, "off", "before", "p50_ms")
        off_tput = paired_ratio(rounds, "off", "before", "per_s")
        notes.append(f"off ÷ before (the build before issue 23, {BASELINE}, its router's actors from "
                     f"{actors_from}): p50 {off_p50:.3f}, throughput {off_tput:.3f}")
        targets += [
            target(f"tracing off ÷ the build before it ({BASELINE}): p50 of one call", off_p50, 1.02,
                   higher_is_better=False),
            target(f"tracing off ÷ the build before it ({BASELINE}): throughput", off_tput, 0.98,
                   higher_is_better=True)]
    else:
        notes.append(f"off ÷ the build before issue 23 not measured: {BASELINE} not in this repository's history")
    return write_results("tracing", data, table, headers, title="Traces: what tracing costs the router",
                         notes=notes, targets=targets)


if __name__ == "__main__":
    print(main().read_text())
