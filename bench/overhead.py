"""Overhead of the router: `invoke` through the router against a direct call
to the same provider actor (one hop) and a trivial forwarding actor (two
hops, the floor for any design that puts an actor in front of providers).

Two paths. An idempotent method (verify_email, no key): nothing durable, so
the router's own routing work is all that separates it from the forwarder;
the targets apply here. A keyed send (send_email with an idempotency key):
the router looks the key up and stores the result, the provider journals
the send (SQLite); its floor is the forwarder calling the provider with the
journal on.

Targets (issue 2/6): router p50 <= 1.05x the forwarder's, pipelined
throughput >= 0.9x the forwarder's.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    alternate,
    gateway,
    local_ray,
    median,
    medians,
    paired_ratio,
    percentile,
    simulated,
    target,
    write_results,
)

SYNC_CALLS = 200          # sequential round trips per round
PIPELINED_CALLS = 500     # submitted at once per round
ROUNDS = 7
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}
VERIFY = {"email": "ann@example.com"}
LABELS = {
    "direct": "verify_email: direct call to the provider actor (one hop)",
    "forwarder": "verify_email: trivial forwarding actor (two hops, the floor)",
    "router": "verify_email: router `invoke`",
    "forwarder_journal": "keyed send: forwarding actor, provider journals the send",
    "router_send": "keyed send: router `invoke` with an idempotency key",
}


def main() -> Path:
    with local_ray() as ray:
        from actors.client import Gateway
        from actors.messages import CallContext
        from actors.names import provider_name
        from actors.payloads import METHODS, validate_payload

        caps = {"email_verification": {"providers": [simulated("primary", latency_ms=0)]},
                "email_sending": {"providers": [simulated("primary", latency_ms=0)]}}
        with gateway(caps) as spec:
            ns = spec.namespace
            gw = Gateway(ns)
            router = gw.router("email_verification")
            provider = ray.get_actor(provider_name("email_verification", "primary"), namespace=ns)
            send_router = gw.router("email_sending")
            send_provider = ray.get_actor(provider_name("email_sending", "primary"), namespace=ns)

            @ray.remote(num_cpus=0)
            class Forwarder:
                """The two-hop floor: takes a call and passes it on, nothing else."""

                def __init__(self, target: Any):
                    self.target = target

                async def call(self, method: str, payload: Any, ctx: Any) -> Any:
                    return await self.target.call.remote(method, payload, ctx)

            forwarder = Forwarder.remote(provider)
            send_forwarder = Forwarder.remote(send_provider)
            verify = validate_payload(METHODS["email_verification"]["verify_email"], VERIFY)
            email = validate_payload(METHODS["email_sending"]["send_email"], EMAIL)

            def ctx() -> CallContext:
                return CallContext(request_id=uuid.uuid4().hex, method="verify_email", timeout_s=10)

            def keyed_ctx() -> CallContext:
                return CallContext(request_id=uuid.uuid4().hex, method="send_email", timeout_s=10,
                                   idempotency_key=uuid.uuid4().hex, journal=True)

            submit = {
                "direct": lambda: provider.call.remote("verify_email", verify, ctx()),
                "forwarder": lambda: forwarder.call.remote("verify_email", verify, ctx()),
                "router": lambda: router.invoke.remote("verify_email", VERIFY),
                "forwarder_journal": lambda: send_forwarder.call.remote("send_email", email, keyed_ctx()),
                "router_send": lambda: send_router.invoke.remote("send_email", EMAIL, idempotency_key=uuid.uuid4().hex),
            }
            for fn in submit.values():  # warm up workers, connections and code paths
                ray.get([fn() for _ in range(100)])

            # CPU time of each process on the path, per pipelined call: where
            # a 2-core machine's throughput goes.
            def pid_of(handle: Any) -> int:
                return ray.get(handle.__ray_call__.remote(lambda self: os.getpid()))

            pids = {"router": pid_of(router), "forwarder": pid_of(forwarder), "provider": pid_of(provider),
                    "send_router": pid_of(send_router), "send_forwarder": pid_of(send_forwarder),
                    "send_provider": pid_of(send_provider), "driver": os.getpid()}
            path = {
                "direct": {"front": None, "provider": "provider"},
                "forwarder": {"front": "forwarder", "provider": "provider"},
                "router": {"front": "router", "provider": "provider"},
                "forwarder_journal": {"front": "send_forwarder", "provider": "send_provider"},
                "router_send": {"front": "send_router", "provider": "send_provider"},
            }

            import psutil  # Ray ships it (ray/thirdparty_files), importable once ray is

            def cpu_s(pid: int) -> float:
                t = psutil.Process(pid).cpu_times()
                return t.user + t.system

            def measure(name: str, fn: Any) -> dict[str, float]:
                latencies = []
                for _ in range(SYNC_CALLS):
                    t = time.perf_counter()
                    ray.get(fn())
                    latencies.append((time.perf_counter() - t) * 1000)
                roles = {"driver": "driver", **{k: v for k, v in path[name].items() if v is not None}}
                before = {role: cpu_s(pids[proc]) for role, proc in roles.items()}
                t = time.perf_counter()
                results = ray.get([fn() for _ in range(PIPELINED_CALLS)])
                elapsed = time.perf_counter() - t
                cpu = {f"cpu_ms_{role}": (cpu_s(pids[proc]) - before[role]) * 1000 / PIPELINED_CALLS
                       for role, proc in roles.items()}
                assert all(getattr(r, "ok", True) for r in results)
                return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                        "throughput_per_s": PIPELINED_CALLS / elapsed, "cpu_ms_front": 0.0, **cpu}

            rounds = alternate({name: (lambda name=name, fn=fn: measure(name, fn)) for name, fn in submit.items()}, ROUNDS)

    summary = {name: medians(r) for name, r in rounds.items()}
    fwd = summary["forwarder"]
    # Paired: each round's router against the same round's forwarder.
    ratios = {
        "router_p50_vs_forwarder": paired_ratio(rounds, "router", "forwarder", "p50_ms"),
        "router_p99_vs_forwarder": paired_ratio(rounds, "router", "forwarder", "p99_ms"),
        "router_throughput_vs_forwarder": paired_ratio(rounds, "router", "forwarder", "throughput_per_s"),
        "router_p50_vs_direct": paired_ratio(rounds, "router", "direct", "p50_ms"),
        "send_p50_vs_journaled_forwarder": paired_ratio(rounds, "router_send", "forwarder_journal", "p50_ms"),
        "send_throughput_vs_journaled_forwarder": paired_ratio(rounds, "router_send", "forwarder_journal",
                                                               "throughput_per_s"),
        "send_p50_vs_forwarder": paired_ratio(rounds, "router_send", "forwarder", "p50_ms"),
        "send_throughput_vs_forwarder": paired_ratio(rounds, "router_send", "forwarder", "throughput_per_s"),
        "router_front_cpu_vs_forwarder": paired_ratio(rounds, "router", "forwarder", "cpu_ms_front"),
        "router_path_cpu_vs_forwarder": median([
            sum(r[k] for k in ("cpu_ms_driver", "cpu_ms_front", "cpu_ms_provider"))
            / sum(f[k] for k in ("cpu_ms_driver", "cpu_ms_front", "cpu_ms_provider"))
            for r, f in zip(rounds["router"], rounds["forwarder"], strict=True)]),
    }
    table = [[LABELS[name], f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['throughput_per_s']:.0f}",
              f"{s['p50_ms'] / fwd['p50_ms']:.3f}", f"{s['throughput_per_s'] / fwd['throughput_per_s']:.3f}",
              f"{s['cpu_ms_driver']:.2f} / {s['cpu_ms_front']:.2f} / {s['cpu_ms_provider']:.2f}"]
             for name, s in summary.items()]
    targets = [
        target("overhead: router p50 / forwarder p50", ratios["router_p50_vs_forwarder"], 1.05, False),
        target("overhead: router throughput / forwarder throughput", ratios["router_throughput_vs_forwarder"], 0.9, True,
               why=f"CPU per call, router / forwarder: {ratios['router_front_cpu_vs_forwarder']:.2f} in the front actor, "
                   f"{ratios['router_path_cpu_vs_forwarder']:.2f} over the whole path"),
        target("overhead, keyed send: router p50 / journaled forwarder p50", ratios["send_p50_vs_journaled_forwarder"],
               None, False, why=f"vs the plain forwarder: {ratios['send_p50_vs_forwarder']:.3f}"),
        target("overhead, keyed send: router throughput / journaled forwarder throughput",
               ratios["send_throughput_vs_journaled_forwarder"], None, True,
               why=f"vs the plain forwarder: {ratios['send_throughput_vs_forwarder']:.3f}"),
    ]
    notes = [
        f"{ROUNDS} alternating rounds of {SYNC_CALLS} sequential calls (p50, p99) and {PIPELINED_CALLS} pipelined calls "
        "(calls/s); medians of the rounds. Simulated providers with no latency, so only hops and the gateway's own work "
        "are measured.",
        "CPU ms per call: CPU time (user + system) each process on the path spent during the pipelined calls, divided "
        "by the calls: the driver, the actor in front (forwarder or router; none for a direct call), the provider "
        "actor. On 2 cores, pipelined throughput is bounded by their sum.",
        "The table's ratio columns divide medians; the targets use paired ratios (each round's router against the same "
        "round's forwarder, median over rounds), which cancel the machine's drift better. Ratios are against the plain "
        "forwarder. The keyed send's own floor is the journaled forwarder: "
        f"router p50 {ratios['send_p50_vs_journaled_forwarder']:.3f}×, throughput "
        f"{ratios['send_throughput_vs_journaled_forwarder']:.3f}× of it (the router adds its key lookup and result store).",
    ]

    def plot(path: Path) -> None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        names = list(summary)
        short = {"direct": "direct", "forwarder": "forwarder", "router": "router", "forwarder_journal": "fwd +\njournal",
                 "router_send": "router\nkeyed send"}
        for ax, key, label in ((axes[0], "p50_ms", "sync round trip p50 (ms)"),
                               (axes[1], "throughput_per_s", "pipelined calls/s")):
            for i, name in enumerate(names):
                values = [r[key] for r in rounds[name]]
                ax.scatter([i] * len(values), values, alpha=0.5)
                ax.bar(i, summary[name][key], alpha=0.3)
            ax.set_xticks(range(len(names)), [short[n] for n in names])
            ax.set_title(label)
        fig.suptitle(f"router overhead: p50 {ratios['router_p50_vs_forwarder']:.3f}x forwarder, "
                     f"throughput {ratios['router_throughput_vs_forwarder']:.3f}x")
        fig.tight_layout()
        fig.savefig(path, dpi=100)

    return write_results(
        "overhead",
        {"rounds": ROUNDS, "sync_calls": SYNC_CALLS, "pipelined_calls": PIPELINED_CALLS,
         "median_of_rounds": summary, "ratios": ratios, "per_round": rounds},
        table, ["variant", "p50 ms", "p99 ms", "calls/s pipelined", "p50 / forwarder", "calls/s / forwarder",
                "CPU ms per call: driver / front actor / provider"], plot,
        title="Overhead of the router", notes=notes, targets=targets)


if __name__ == "__main__":
    print(main().read_text())
