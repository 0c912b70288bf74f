"""Losing the node that hosts the provider actors, mid-traffic, on a
three-node local cluster (`ray.cluster_utils.Cluster`).

The head (1 CPU) hosts the driver, the routers and the supervisor; a worker
node `doomed` hosts every provider actor; a second worker `spare` joins
after the deploy. Traffic goes to three capabilities (sends with an outbox,
webhooks, CRM upserts); once a third of it is answered, `doomed` is removed.
Ray restarts the providers on `spare`; every request must be accounted for
by the ledger (tests/faults/accounting.py).

Placement comes from the config's `placement`: providers need a custom
resource only the worker nodes have; routers and the supervisor need the
head's built-in resource.

All nodes share this machine's filesystem, so the SQLite state and the
ledger are shared. Ray's files go under $RAY_TMPDIR (set it: the
test does), so this cluster never writes /tmp/ray/ray_current_cluster,
which `ray.init(address="auto")` and `aicmo-gateway` read.

    python -m tests.faults.node_loss [--requests N] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

NAMESPACE = "nodeloss"


def placement(ray: Any) -> dict[str, dict[str, Any]]:
    """Actor name -> its node, state and restarts, from the GCS's actor table
    (this cluster is private: every named actor on it is the gateway's)."""
    out = {}
    for entry in ray._private.state.actors().values():
        if entry.get("Name") and entry["State"] != "DEAD":
            out[entry["Name"]] = {"node": entry["Address"]["NodeID"], "state": entry["State"],
                                  "restarts": entry.get("NumRestarts", 0)}
    return out


def run(n_requests: int, work: Path) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    from actors.config import parse_config
    from actors.names import SUPERVISOR_NAME, router_name
    from actors.deploy import gateway as deploy_module
    from actors.specs import build_spec
    from tests.faults.accounting import CarefulCaller, account, mixed_requests, read_ledger, sim, wait_until

    timings: dict[str, float] = {}
    started = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        doomed = cluster.add_node(num_cpus=1, resources={"providers": 1000})
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False, namespace=NAMESPACE)
        timings["cluster_up_s"] = time.monotonic() - started
        names = {cluster.head_node.node_id: "head", doomed.node_id: "doomed"}

        on_head = {"resources": {"node:__internal_head__": 0.001}}
        ledger = work / "ledger.jsonl"

        def pair(seed: int, outbox: bool = False) -> dict[str, Any]:
            providers = [{"name": "primary", "adapter": "simulated", "settings": sim(ledger, seed=seed)},
                         {"name": "backup", "adapter": "simulated", "settings": sim(ledger, seed=seed + 1)}]
            return {"providers": providers + ([{"name": "outbox", "adapter": "outbox"}] if outbox else [])}

        config = {
            "namespace": NAMESPACE, "state": {"url": str(work / "state")},
            "policy": {"health": {"cooldown_s": 1}, "routing": {"deadline_s": 30, "unreachable_backoff_s": 0.3}},
            "supervisor": {"check_interval_s": 0, "drain_interval_s": 0.3, "drain_rate_per_s": 200},
            # Providers on the nodes offering `providers` (the doomed one, then the spare); the rest on the head.
            "placement": {"providers": {"resources": {"providers": 1}}, "routers": on_head, "supervisor": on_head},
            "capabilities": {"email_sending": pair(1, outbox=True), "webhook_dispatch": pair(3, outbox=True),
                             "crm_sync": pair(5)},
        }
        deploy_module.deploy(build_spec(parse_config(config, "<node-loss>", env={})), detached=False)
        spare = cluster.add_node(num_cpus=1, resources={"providers": 1000})
        cluster.wait_for_nodes()
        names[spare.node_id] = "spare"
        timings["deployed_s"] = time.monotonic() - started
        before = placement(ray)

        share = {"email_sending": 0.5, "webhook_dispatch": 0.3, "crm_sync": 0.2}
        requests = mixed_requests({cap: int(n_requests * s) for cap, s in share.items()}, tag="n", seed=4)
        caller = CarefulCaller(ray, NAMESPACE, window=32, deadline_s=30)
        removed_at: dict[str, Any] = {}

        def remove_when_a_third_is_answered() -> None:
            wait_until(lambda: len(caller.results) >= len(requests) // 3, timeout_s=120, interval_s=0.02)
            removed_at["answered"] = len(caller.results)
            removed_at["ledger"] = len(read_ledger(ledger))
            t = time.monotonic()
            cluster.remove_node(doomed)
            removed_at["at_s"] = round(t - started, 2)
            removed_at["remove_s"] = round(time.monotonic() - t, 2)

        remover = threading.Thread(target=remove_when_a_third_is_answered, daemon=True)
        remover.start()
        traffic_started = time.monotonic()
        results = caller.run(requests, pace_s=0.01, timeout_s=240)
        remover.join(timeout=120)
        timings["traffic_s"] = time.monotonic() - traffic_started

        supervisor = ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE)

        def settled() -> bool:
            try:
                ray.get(supervisor.status_report.remote(), timeout=30)
                return not [i for i in ray.get(supervisor.outbox_list.remote(None, False), timeout=30)
                            if i.state == "pending"]
            except Exception:  # noqa: BLE001 - still recovering
                return False

        drained = wait_until(settled, timeout_s=120, interval_s=0.5)
        items = ray.get(supervisor.outbox_list.remote(None, True, 100_000), timeout=60)
        verdict = account(requests, results, read_ledger(ledger), items)
        after = placement(ray)
        counters = {cap: ray.get(ray.get_actor(router_name(cap), namespace=NAMESPACE).counters.remote(), timeout=30)
                    for cap in share}
        timings["total_s"] = time.monotonic() - started

        def where(p: dict[str, dict[str, Any]]) -> dict[str, str]:
            return {name: names.get(v["node"], v["node"][:8]) for name, v in sorted(p.items())}

        return {
            "verdict": verdict.summary(), "problems": verdict.problems[:50], "delivered": verdict.delivered,
            "queued_then_delivered": verdict.queued_then_delivered, "still_queued": verdict.still_queued,
            "parked": verdict.parked, "outbox_drained": drained,
            "before": where(before), "after": where(after),
            "after_state": {name: v["state"] for name, v in after.items()},
            "restarts": {name: v["restarts"] for name, v in after.items()},
            "removed": removed_at, "router_counters": counters, "caller": {k: v for k, v in vars(caller.stats).items() if k != "errors"},
            "caller_errors": dict(caller.stats.errors),
            "timings": {k: round(v, 1) for k, v in timings.items()},
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    args = parser.parse_args(argv)
    if "RAY_TMPDIR" not in os.environ:
        # Short (Ray's socket paths have a length limit) and private.
        os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="aicmo-nl-", dir="/tmp")
    work = Path(tempfile.mkdtemp(prefix="aicmo-nl-work-"))
    try:
        report = run(args.requests, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    ok = not report["problems"] and report["outbox_drained"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
