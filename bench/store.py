"""The state store: keyed sends through the router on PostgreSQL against
the embedded SQLite file, in the same run.

Two gateways are deployed side by side on one local Ray, alike but for
`state.url`: a SQLite directory, and a database on a real PostgreSQL server
started for the run (tests/support/postgres.py: Debian's package, a
temporary directory, loopback). Rounds alternate between them. For each:

- per call: sequential `invoke`s of a keyed `send_email` (p50), and 100
  pipelined ones (throughput);
- batched: `invoke_many` of 100 keyed sends (throughput);
- store round trips per request: statements the router and the provider
  sent, from their own counters (`store_health().round_trips`).

One simulated provider with no latency: only the gateway's own costs.
Target (issue 9): PostgreSQL at least 0.8x SQLite's batched throughput.
"""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.common import alternate, gateway, local_ray, medians, percentile, simulated, target, write_results

BATCH = 100
SEQUENTIAL = 60
ROUNDS = 5
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}
STORES = ("sqlite", "postgresql")


def main() -> Path:
    from tests.support.postgres import PostgresServer, unavailable_reason

    missing = unavailable_reason()
    if missing:
        raise SystemExit(f"bench store needs PostgreSQL: {missing}")
    with ExitStack() as stack:
        server = stack.enter_context(PostgresServer())
        db = server.create_database("bench_store")
        pg_url = db.url.replace(f"{server.user}@", f"{server.user}:{db.password}@", 1)
        ray = stack.enter_context(local_ray())
        caps = {"email_sending": {"providers": [simulated("primary", latency_ms=0)]}}
        handles: dict[str, dict[str, Any]] = {}
        for kind in STORES:
            spec = stack.enter_context(gateway(caps, namespace=f"bench-store-{kind}",
                                               state_url=pg_url if kind == "postgresql" else None))
            handles[kind] = {
                "router": ray.get_actor("router:email_sending", namespace=spec.namespace),
                "provider": ray.get_actor("provider:email_sending:primary", namespace=spec.namespace),
            }

        def store_use(kind: str) -> tuple[int, float]:
            """Statements sent, and seconds spent waiting for them, by the router and the provider."""
            h = handles[kind]
            both = ray.get([h["router"].store_health.remote(), h["provider"].store_health.remote()], timeout=60)
            return sum(x.round_trips for x in both), sum(x.busy_s for x in both)

        def round_trips(kind: str) -> int:
            return store_use(kind)[0]

        def keyed() -> dict[str, str]:
            return {"idempotency_key": uuid.uuid4().hex}

        def per_call(kind: str) -> dict[str, float]:
            router = handles[kind]["router"]
            before = round_trips(kind)
            latencies = []
            for _ in range(SEQUENTIAL):
                t = time.perf_counter()
                assert ray.get(router.invoke.remote("send_email", EMAIL, **keyed())).ok
                latencies.append((time.perf_counter() - t) * 1000)
            trips = (round_trips(kind) - before) / SEQUENTIAL
            t = time.perf_counter()
            results = ray.get([router.invoke.remote("send_email", EMAIL, **keyed()) for _ in range(BATCH)])
            elapsed = time.perf_counter() - t
            assert all(r.ok for r in results)
            return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                    "pipelined_per_s": BATCH / elapsed, "round_trips_per_request": trips}

        def batched(kind: str) -> dict[str, float]:
            router = handles[kind]["router"]
            trips, busy = store_use(kind)
            t = time.perf_counter()
            for _ in range(5):
                results = ray.get(router.invoke_many.remote([("send_email", EMAIL, keyed()) for _ in range(BATCH)]))
                assert all(r.ok for r in results)
            elapsed = time.perf_counter() - t
            trips_after, busy_after = store_use(kind)
            return {"batched_per_s": 5 * BATCH / elapsed, "round_trips_per_request": (trips_after - trips) / (5 * BATCH),
                    "store_ms_per_batch": (busy_after - busy) * 1000 / 5, "ms_per_batch": elapsed * 1000 / 5}

        for kind in STORES:  # warm up: connections, schema, prepared statements
            per_call(kind)
            batched(kind)
        rounds = alternate({f"{kind}/{mode}": (lambda kind=kind, fn=fn: fn(kind))
                            for kind in STORES for mode, fn in (("per_call", per_call), ("batched", batched))}, ROUNDS)

    summary = {name: medians(r) for name, r in rounds.items()}
    sq, pg = summary["sqlite/per_call"], summary["postgresql/per_call"]
    sqb, pgb = summary["sqlite/batched"], summary["postgresql/batched"]
    ratios = {"p50": pg["p50_ms"] / sq["p50_ms"], "pipelined": pg["pipelined_per_s"] / sq["pipelined_per_s"],
              "batched": pgb["batched_per_s"] / sqb["batched_per_s"]}
    table = [
        [kind, f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['pipelined_per_s']:.0f}",
         f"{s['round_trips_per_request']:.2f}", f"{b['batched_per_s']:.0f}", f"{b['round_trips_per_request']:.3f}"]
        for kind, s, b in (("SQLite (embedded)", sq, sqb), ("PostgreSQL (loopback)", pg, pgb))]
    table.append(["PostgreSQL / SQLite", f"{ratios['p50']:.2f}", "", f"{ratios['pipelined']:.2f}", "",
                  f"{ratios['batched']:.2f}", ""])
    targets = [
        target("store: PostgreSQL / SQLite throughput, invoke_many of 100 keyed sends", ratios["batched"], 0.8, True,
               "{:.2f}", f"{pgb['batched_per_s']:.0f} vs {sqb['batched_per_s']:.0f} requests/s; store round trips "
                         f"per request {pgb['round_trips_per_request']:.3f} vs {sqb['round_trips_per_request']:.3f}"),
        target("store: PostgreSQL / SQLite p50 of one keyed send", ratios["p50"], None, False, "{:.2f}",
               f"{pg['p50_ms']:.2f} vs {sq['p50_ms']:.2f} ms; {pg['round_trips_per_request']:.1f} store round trips "
               "per request"),
        target("store: PostgreSQL / SQLite throughput, 100 pipelined keyed sends", ratios["pipelined"], None, True,
               "{:.2f}", f"{pg['pipelined_per_s']:.0f} vs {sq['pipelined_per_s']:.0f} requests/s"),
    ]
    notes = [
        f"{ROUNDS} alternating rounds; medians. Per call: {SEQUENTIAL} sequential keyed invokes (latency), then "
        f"{BATCH} pipelined (throughput). Batched: 5 invoke_many of {BATCH}. Every request has its own key.",
        "A keyed send costs, in store statements: the router's claim of its key and its journal read (recovery of "
        "an earlier attempt), the provider's journal claim (writes `started`) and its outcome, and the router's "
        "result. Statements made in one turn of an actor's event loop go as one, so a batch of 100 costs about as "
        "many statements as one request.",
        "PostgreSQL runs on this machine (loopback, fsync off, synchronous_commit on): a server across a network "
        "adds its round-trip time to each statement.",
    ]

    def plot(path: Path) -> None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for ax, (mode, key, label) in zip(axes, (("per_call", "p50_ms", "p50 ms, one keyed send"),
                                                 ("batched", "batched_per_s", "requests/s, invoke_many of 100")),
                                          strict=True):
            for i, kind in enumerate(STORES):
                values = [r[key] for r in rounds[f"{kind}/{mode}"]]
                ax.scatter([i] * len(values), values, alpha=0.5)
                ax.bar(i, summary[f"{kind}/{mode}"][key], alpha=0.3)
            ax.set_xticks(range(len(STORES)), STORES)
            ax.set_title(label)
        fig.tight_layout()
        fig.savefig(path, dpi=100)

    return write_results("store", {"rounds": ROUNDS, "median_of_rounds": summary, "ratios": ratios,
                                   "per_round": rounds}, table,
                         ["store", "p50 ms", "p99 ms", "pipelined req/s", "round trips / request",
                          "invoke_many req/s", "round trips / request (batched)"],
                         plot, title="State store: PostgreSQL against SQLite", notes=notes, targets=targets)


if __name__ == "__main__":
    print(main().read_text())
