"""Hosts a two-node local Ray cluster (`ray.cluster_utils.Cluster`) for
tests/ops/test_cluster.py, in a process of its own (one `ray.init` per
process: the test session has its own cluster).

    python tests/ops/cluster_host.py WORKDIR

1. starts a Standard Webhooks receiver stand-in on 127.0.0.1;
2. starts the head node, with Ray's metrics exported on a known port, and
   deploys a gateway there (detached, as `aicmo-gateway up` does): email
   with a primary that always fails (every request falls back), a backup and
   the outbox; webhooks to the stand-in, with a health URL;
3. sends traffic (email one by one and in a batch);
4. adds node B, whose Ray processes run with HTTP_PROXY/HTTPS_PROXY set to a
   port where nothing listens: node B's egress proxy is down, so nothing on
   node B can reach the stand-in over HTTP, while the head reaches it
   directly. (Ray's own gRPC ignores proxy variables by default.)
5. writes WORKDIR/ready.json and waits until its stdin closes or SIGTERM.

The invalid request of step 3 runs an `on_failure` hook that raises: the
only failed hook call, so the hook metrics have a failure to show.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def print_gcs_logs() -> None:
    """The GCS server's own words, for a head that did not come up (its port file never appeared)."""
    from ray._common.utils import get_default_ray_temp_dir

    sessions = sorted(Path(get_default_ray_temp_dir()).glob("session_2*"), key=lambda p: p.stat().st_mtime)
    for log in sorted(sessions[-1].glob("logs/gcs_server.*")) if sessions else []:
        print(f"--- {log}", log.read_text(errors="replace")[-3000:], sep="\n", file=sys.stderr)


def config(workdir: Path, receiver) -> dict:
    sim = {"latency_ms": 2}
    return {
        "namespace": "ops-cluster",
        "state": {"url": str(workdir / "state")},
        "supervisor": {"check_interval_s": 0, "drain_interval_s": 0, "sample_interval_s": 2, "probe_timeout_s": 5,
                       "node_probe_timeout_s": 60},
        "metrics": {"flush_interval_s": 0.5},
        # A hook that raises on failures: the dashboard's "Hook failures" table has a row to show.
        "hooks": {"on_success": "tests.ops.sample_hooks:record_success", "on_failure": "tests.ops.sample_hooks:explode"},
        "policy": {"health": {"unhealthy_after": 1000}, "routing": {"ranking": "actors.policy.ranking:configured_order"}},
        "capabilities": {
            "email_sending": {"providers": [
                {"name": "primary", "adapter": "simulated", "settings": {**sim, "failure_rate": 1.0}},
                {"name": "backup", "adapter": "simulated", "settings": sim,  # spend and quota metrics
                 "cost": {"per_call": 0.001, "currency": "USD"}, "quota": {"limit": 100000, "per": "month"}},
                {"name": "outbox", "adapter": "outbox"}]},
            "webhook_dispatch": {"providers": [
                {"name": "receiver", "adapter": "webhook",
                 "settings": receiver.adapter_settings(health_url=f"{receiver.base_url}/health")}]},
        },
    }


def main() -> None:
    import ray
    from ray.cluster_utils import Cluster

    from actors.config import parse_config
    from actors.names import router_name
    from actors.deploy.gateway import deploy
    from actors.specs import build_spec
    from actors.sandbox.base import SandboxRunner
    from actors.sandbox.webhook import WebhookReceiverStandIn

    workdir = Path(sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sandbox = SandboxRunner([WebhookReceiverStandIn()]).start()
    receiver = sandbox["webhook"]
    metrics_port = free_port()
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2, "include_dashboard": False, "metrics_export_port": metrics_port})
    except RuntimeError:
        print_gcs_logs()
        raise
    try:
        ray.init(address=cluster.address, namespace="ops-cluster", logging_level=logging.ERROR, log_to_driver=False)
        cfg = parse_config(config(workdir, receiver), "<cluster test>")
        deploy(build_spec(cfg), detached=True, timeout_s=300)
        email = ray.get_actor(router_name("email_sending"), namespace="ops-cluster")
        webhook = ray.get_actor(router_name("webhook_dispatch"), namespace="ops-cluster")
        def welcome(i: int) -> tuple[str, dict, dict]:
            return ("send_email", {"to": [f"lead{i}@example.com"], "subject": "Hi", "text": "Hello"},
                    {"idempotency_key": f"lead-{i}@example.com-welcome"})

        # Half one by one, half in one batch: each provider's metrics count both.
        sent = ray.get([email.invoke.remote(m, p, **o) for m, p, o in map(welcome, range(6))])
        sent += ray.get(email.invoke_many.remote([welcome(i) for i in range(6, 12)]))
        hooks = ray.get([webhook.invoke.remote("dispatch", {"event": "lead.welcomed", "data": {"lead": i}},
                                               idempotency_key=f"hook-{i}") for i in range(4)])
        invalid = ray.get(email.invoke.remote("send_email", {"to": []}))
        dead_proxy = f"http://127.0.0.1:{free_port()}"
        node_b = cluster.add_node(num_cpus=1, env_vars={"HTTP_PROXY": dead_proxy, "HTTPS_PROXY": dead_proxy,
                                                         "NO_PROXY": "", "no_proxy": ""})
        head_id = cluster.head_node.node_id
        (workdir / "ready.json").write_text(json.dumps({
            "address": cluster.address, "metrics_port": metrics_port, "namespace": "ops-cluster",
            "head_node_id": head_id, "blocked_node_id": node_b.node_id, "webhook_url": receiver.base_url, "webhook_secret": receiver.secret,
            "email_ok": [r.ok for r in sent], "email_providers": [r.provider for r in sent],
            "webhook_ok": [r.ok for r in hooks], "invalid_kind": str(invalid.error.kind) if invalid.error else None,
        }))
        try:
            while sys.stdin.read(1):
                pass
        except (OSError, ValueError):
            time.sleep(3600)
    finally:
        try:
            ray.shutdown()
        finally:
            cluster.shutdown()
            sandbox.stop()


if __name__ == "__main__":
    main()
