"""Start-up and memory.

Start-up: `up` of the full default config (config/default.yaml as it is: every
capability, real adapters pointed at the local stand-ins, which need not be
running for the actors to start) until every actor answers, against creating
the same number of bare Ray actors, in alternating rounds on the same private
cluster; and `up` again with nothing changed. Once per run, the real command
`aicmo-gateway up` in a fresh process, which adds Python's start and imports.

Memory: resident (RSS) and unique (USS) memory of each actor's worker
process, idle after start, against a bare `@ray.remote class Bare` actor;
per adapter kind, plus the router and the supervisor. The packages each
process loaded beyond the bare actor's say where the difference comes from.

Target (issue 6): memory per actor <= 1.1x a bare Ray actor.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import alternate, local_ray, median, target, write_results

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "default.yaml"
NAMESPACE = "aicmo-bench-up"
ROUNDS = 1
# Imported one after another in a fresh bare actor, to attribute memory.
IMPORT_STEPS = ["msgspec", "pydantic", "yaml", "sqlite3", "actors.payloads", "actors.config", "actors.provider.actor",
                "actors.router.actor", "httpx", "aiohttp", "aiosmtplib", "aioimaplib"]


def load_default(state_dir: str) -> dict[str, Any]:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    return {**raw, "namespace": NAMESPACE, "state": {"url": state_dir}}


def process_memory(pid: int) -> dict[str, float]:
    import psutil

    info = psutil.Process(pid).memory_full_info()
    return {"rss_mb": info.rss / 2**20, "uss_mb": info.uss / 2**20}


def _pid(self: Any) -> int:
    return os.getpid()


def _modules(self: Any) -> list[str]:
    return sorted({name.split(".")[0] for name in list(sys.modules)})


def main() -> Path:
    state_dir = tempfile.mkdtemp(prefix="aicmo-bench-state-")
    try:
        with local_ray() as ray:
            data = run(ray, state_dir)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    return report(data)


def run(ray: Any, state_dir: str) -> dict[str, Any]:
    from actors.config import parse_config
    from actors.deploy.gateway import (
        PROVIDER_OPTIONS,
        deploy,
        gateway_actor_names,
        teardown,
    )
    from actors.specs import build_spec

    raw = load_default(state_dir)
    spec = build_spec(parse_config(raw, str(DEFAULT_CONFIG), env={}))
    n_actors = 1 + sum(1 + len(c.providers) for c in spec.capabilities)

    @ray.remote
    class Bare:
        def ready(self) -> bool:
            return True

    # Only what lets ~30 actors fit on 2 CPUs, as the gateway's own actors do;
    # max_concurrency would make this sync actor a threaded one.
    bare_opts = {"num_cpus": PROVIDER_OPTIONS["num_cpus"]}

    def up() -> dict[str, float]:
        t = time.perf_counter()
        deploy(spec, detached=True)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        report = deploy(spec, detached=True)
        again = time.perf_counter() - t
        assert len(report.unchanged) == n_actors, report
        teardown(NAMESPACE)
        return {"seconds": cold, "unchanged_seconds": again}

    def bare() -> dict[str, float]:
        t = time.perf_counter()
        actors = [Bare.options(**bare_opts).remote() for _ in range(n_actors)]
        ray.get([a.ready.remote() for a in actors])
        elapsed = time.perf_counter() - t
        for a in actors:
            ray.kill(a)
        return {"seconds": elapsed}

    warm = [Bare.options(**bare_opts).remote() for _ in range(4)]  # a new cluster's first workers start slower
    ray.get([a.ready.remote() for a in warm])
    for a in warm:
        ray.kill(a)
    rounds = alternate({"bare": bare, "up": up}, ROUNDS)

    # The real command, in a fresh process, against this cluster; its
    # gateway then serves for the memory figures.
    cli = cli_up(ray, raw, state_dir)
    if "error" in cli:
        deploy(spec, detached=True)

    # Memory: bare actors, a bare actor that imports step by step, and the gateway, all idle.
    handles = {name: ray.get_actor(name, namespace=NAMESPACE) for name in gateway_actor_names(NAMESPACE)}
    bares = [Bare.options(**bare_opts).remote() for _ in range(3)]
    ray.get([b.ready.remote() for b in bares])
    time.sleep(1.0)  # let start-up garbage settle
    bare_mem = [process_memory(ray.get(b.__ray_call__.remote(_pid))) for b in bares]
    bare_modules = set(ray.get(bares[0].__ray_call__.remote(_modules)))
    steps = import_steps(ray, Bare, bare_opts)
    # PIDs from the GCS's actor table (no call into the actors needed).
    pids = {info["Name"]: info["Pid"] for info in ray._private.state.actors().values()
            if info["State"] == "ALIVE" and info["Name"] in handles}
    actors: dict[str, Any] = {}
    for name, handle in handles.items():
        try:
            modules = sorted(set(ray.get(handle.__ray_call__.remote(_modules), timeout=30)) - bare_modules)
        except Exception as exc:  # noqa: BLE001 - the memory figure stands without it
            modules = [f"(not read: {type(exc).__name__})"]
        actors[name] = {**process_memory(pids[name]), "extra_packages": modules}
    adapters = {p.actor_name: p.adapter for c in spec.capabilities for p in c.providers}
    teardown(NAMESPACE)
    for b in bares:
        ray.kill(b)
    return {"rounds": rounds, "cli": cli, "n_actors": n_actors, "bare": bare_mem, "actors": actors,
            "adapters": adapters, "import_steps": steps}


def import_steps(ray: Any, Bare: Any, opts: dict[str, Any]) -> list[dict[str, Any]]:
    def measure(self: Any, steps: list[str]) -> list[dict[str, Any]]:
        import importlib

        import psutil

        proc = psutil.Process()
        out = []
        for name in steps:
            before = proc.memory_full_info()
            try:
                importlib.import_module(name)
                error = None
            except Exception as exc:  # noqa: BLE001 - a missing package is a result, not a crash
                error = f"{type(exc).__name__}: {exc}"
            after = proc.memory_full_info()
            out.append({"module": name, "rss_delta_mb": (after.rss - before.rss) / 2**20,
                        "uss_delta_mb": (after.uss - before.uss) / 2**20, "error": error})
        return out

    actor = Bare.options(**opts).remote()
    try:
        return ray.get(actor.__ray_call__.remote(measure, IMPORT_STEPS))
    finally:
        ray.kill(actor)


def cli_up(ray: Any, raw: dict[str, Any], state_dir: str) -> dict[str, Any]:
    """`aicmo-gateway up` in a fresh process against this cluster; the gateway stays up."""
    exe = Path(sys.executable).with_name("aicmo-gateway")
    if not exe.exists():
        return {"error": f"{exe} not found"}
    config = Path(state_dir) / "default-for-bench.yaml"
    config.write_text(yaml.safe_dump(raw))
    address = ray.get_runtime_context().gcs_address
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AICMO_", "RAY_ADDRESS"))}
    t = time.perf_counter()
    up = subprocess.run([str(exe), "up", "--config", str(config), "--address", address], capture_output=True, text=True,
                        env=env, timeout=300, check=False)
    seconds = time.perf_counter() - t
    out = {"seconds": seconds, "exit": up.returncode, "output": (up.stdout + up.stderr)[-600:]}
    if up.returncode != 0:
        out["error"] = f"exit {up.returncode}"
    return out


def report(data: dict[str, Any]) -> Path:
    rounds = data["rounds"]
    up_s = median([r["seconds"] for r in rounds["up"]])
    again_s = median([r["unchanged_seconds"] for r in rounds["up"]])
    bare_s = median([r["seconds"] for r in rounds["bare"]])
    n = data["n_actors"]
    bare_rss = median([m["rss_mb"] for m in data["bare"]])
    bare_uss = median([m["uss_mb"] for m in data["bare"]])

    groups: dict[str, list[dict[str, Any]]] = {}
    for name, m in data["actors"].items():
        if name == "supervisor":
            kind = "supervisor"
        elif name.startswith("router:"):
            kind = "router (median of all)"
        else:
            kind = f"provider: {data['adapters'][name]}"
        groups.setdefault(kind, []).append(m)
    mem_rows = [["bare Ray actor (median of 3)", f"{bare_rss:.1f}", "1.00", f"{bare_uss:.1f}", "1.00", ""]]
    worst = ("", 0.0)
    for kind in sorted(groups, key=lambda k: (not k.startswith("router"), not k.startswith("supervisor"), k)):
        ms = groups[kind]
        rss, uss = median([m["rss_mb"] for m in ms]), median([m["uss_mb"] for m in ms])
        extra = sorted({p for m in ms for p in m["extra_packages"]})
        mem_rows.append([kind, f"{rss:.1f}", f"{rss / bare_rss:.2f}", f"{uss:.1f}", f"{uss / bare_uss:.2f}",
                         ", ".join(extra)])
        if rss / bare_rss > worst[1]:
            worst = (kind, rss / bare_rss)
    all_rss = [m["rss_mb"] for m in data["actors"].values()]
    median_ratio = median(all_rss) / bare_rss

    cli = data["cli"]
    table = [
        [f"`up` of config/default.yaml ({n} actors), cold, in this process", f"{up_s:.1f}", f"{up_s / bare_s:.2f}"],
        [f"{n} bare Ray actors, created and answering", f"{bare_s:.1f}", "1.00"],
        ["`up` again, nothing changed", f"{again_s:.2f}", f"{again_s / bare_s:.2f}"],
        ["`aicmo-gateway up` command, fresh process (once)",
         f"{cli['seconds']:.1f}" if "seconds" in cli else "-", cli.get("error", "exit 0")],
    ]
    steps = "; ".join(f"{s['module']} +{s['rss_delta_mb']:.1f}" + (f" ({s['error']})" if s["error"] else "")
                      for s in data["import_steps"])
    notes = [
        f"Start-up: {ROUNDS} round(s) of each, one after the other on one private cluster (2 CPUs, shared), after "
        "4 warm-up actors. `up` is `deploy(build_spec(config), detached=True)`, what `aicmo-gateway up` runs after "
        "parsing; it returns once every actor answers `ready`. The command adds Python's start, imports and connecting.",
        "Memory: each actor's worker process, idle after start (psutil); RSS counts shared pages (Ray's and Python's "
        "libraries) in every process, USS only the process's own. 'extra packages': top-level modules loaded beyond "
        "the bare actor's.",
        f"Memory added by imports, one after another in a fresh bare actor (MB RSS): {steps}.",
    ]
    targets = [
        target("memory: provider/router actor RSS / bare Ray actor RSS (worst kind)", worst[1], 1.1, False, "{:.2f}",
               f"worst: {worst[0]}; median over all gateway actors {median_ratio:.2f}x; bare actor {bare_rss:.0f} MB"),
        target("start-up: `up` of the default config / the same number of bare actors", up_s / bare_s, None, False,
               "{:.2f}", f"{up_s:.1f} s vs {bare_s:.1f} s for {n} actors (no target set; reported)"),
    ]
    md_table = table + [["", "", ""], ["**memory per actor**", "RSS MB (× bare) / USS MB (× bare)", "extra packages"]]
    md_table += [[r[0], f"{r[1]} ({r[2]}×) / {r[3]} ({r[4]}×)", r[5]] for r in mem_rows]

    def plot(path: Path) -> None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 2.5]})
        labels = ["up (cold)", "bare actors", "up again"]
        values = [up_s, bare_s, again_s]
        axes[0].bar(range(3), values, color=["C0", "C7", "C1"])
        axes[0].set_xticks(range(3), labels)
        axes[0].set_title(f"start-up, {n} actors (s)")
        names = [r[0].replace("provider: ", "") for r in mem_rows]
        axes[1].bar(range(len(names)), [float(r[1]) for r in mem_rows], label="RSS")
        axes[1].bar(range(len(names)), [float(r[3]) for r in mem_rows], label="USS")
        axes[1].axhline(1.1 * bare_rss, color="k", linestyle="dashed", linewidth=0.8)
        axes[1].set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        axes[1].set_title("memory per actor, MB (dashed: 1.1× bare RSS)")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)

    return write_results("startup", {**data, "up_seconds": up_s, "bare_seconds": bare_s, "unchanged_seconds": again_s,
                                     "bare_rss_mb": bare_rss, "bare_uss_mb": bare_uss},
                         md_table, ["what", "seconds", "× bare actors"], plot, title="Start-up and memory",
                         notes=notes, targets=targets)


if __name__ == "__main__":
    print(main().read_text())
