"""The head node's loss under keyed traffic (issue 19): what callers see.

The cluster of tests/multinode/test_head_loss.py, once: a head with no CPUs
whose GCS is in Redis (Debian's redis-server, loopback), two worker nodes with
addresses of their own, PostgreSQL on the machine's address, the gateway
deployed by `up` with the default placement (off the head). A detached caller
on worker `w` sends keyed `send_email`s through the Python client at 20/s;
after BEFORE_S the head's process group is SIGKILLed, and started again
OUTAGE_S later with the same Redis.

Figures:
- answered during the outage / sent during it, through the client and
  through HTTP to the Serve proxy of a worker hosting a replica (target 100%);
- p99 latency during the outage / p99 before it (target <= 2);
- from the head's return (its `ray start` done) to `status` complete (reported);
- delivered exactly once (the simulated providers' ledger).

Needs root (mount and network namespaces), Redis and PostgreSQL.
Run: `.venv/bin/python -m bench head_loss` (about 2 minutes).
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from bench.common import percentile, target, write_results

BEFORE_S = 15
OUTAGE_S = 15
AFTER_S = 10
RATE_PER_S = 20


def main() -> Path:
    from tests.faults.accounting import read_ledger, sim
    from tests.multinode.test_head_loss import (API_KEY, CALLER, EMAIL, HTTP_PORT, NAMESPACE, HttpTraffic, complete,
                                                machine_address, replica_nodes, status)
    from tests.support.nodes import GcsStorage, RayNodes, wait_for
    from tests.support.postgres import PostgresServer
    from tests.support.redis import RedisServer

    scratch = Path(tempfile.mkdtemp(prefix="bench-head-loss-"))
    ledger = scratch / "ledger.jsonl"
    redis = RedisServer().start()
    pg = PostgresServer(host=machine_address()).start()
    cluster = RayNodes(head_cpus=0, gcs=GcsStorage.redis(redis.address, namespace=f"bench-{time.time_ns()}"),
                       gcs_reconnect_timeout_s=120)
    try:
        cluster.start()
        cluster.add_node("w", resources={"w": 100}, own_ip=True)
        cluster.add_node("v", resources={"v": 100}, own_ip=True)
        db = pg.create_database("headloss")
        config = {"namespace": NAMESPACE, "state": {"url": db.url.replace("@", ":${AICMO_TEST_PG_PASSWORD}@", 1)},
                  "supervisor": {"check_interval_s": 5, "check_jitter_s": 0, "drain_interval_s": 1,
                                 "probe_all_nodes": True},
                  "http": {"enabled": True, "host": "0.0.0.0", "port": HTTP_PORT, "api_keys": ["${AICMO_API_KEY}"]},
                  "capabilities": {"email_sending": {"providers": [
                      {"name": "primary", "adapter": "simulated", "settings": sim(ledger, latency_ms=5)},
                      {"name": "backup", "adapter": "simulated", "settings": sim(ledger, seed=2, latency_ms=5)}]}}}
        path = scratch / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        done = cluster.cli("up", "--config", str(path), env={"AICMO_TEST_PG_PASSWORD": db.password,
                                                             "AICMO_API_KEY": API_KEY})
        if done.returncode != 0:
            raise RuntimeError(done.stdout + done.stderr)
        cluster.run_driver(CALLER + """
caller = Caller.options(name="caller", lifetime="detached", resources={"w": 0.01}).remote(ARGS["ns"], ARGS["email"])
ray.get(caller.start.remote(ARGS["period_s"]))
result(True)
""", args={"ns": NAMESPACE, "email": EMAIL, "period_s": 1 / RATE_PER_S}, namespace="bench-callers")
        hosting = replica_nodes(cluster)
        worker = next(n for n in ("w", "v") if cluster.node(n).node_id in hosting)
        http = HttpTraffic(f"http://{cluster.node(worker).ip}:{HTTP_PORT}")
        http.thread.start()
        started = time.time()
        time.sleep(BEFORE_S)
        cluster.kill_head()
        killed_at = time.time()
        refused_started = time.monotonic()
        refused = cluster.cli("status", "--namespace", NAMESPACE, timeout_s=120)
        refused_s = time.monotonic() - refused_started
        time.sleep(max(0.0, killed_at + OUTAGE_S - time.time()))
        restart_started = time.time()
        cluster.restart_head()
        back_at = time.time()
        wait_for(lambda: complete(status(cluster)), timeout_s=180, what="status complete")
        complete_after_s = time.time() - back_at
        time.sleep(AFTER_S)
        http.stop = True
        http.thread.join(10)
        log = cluster.run_driver("""
caller = ray.get_actor("caller")
ray.get(caller.results.remote(stop=True))
__import__("time").sleep(1)
result(ray.get(caller.results.remote()))
ray.kill(caller)
""", namespace="bench-callers")
    finally:
        cluster.shutdown()
        pg.stop()
        redis.stop()

    before = [r for r in log if started + 3 <= r[1] < killed_at]   # the steady part: the first seconds warm up
    during = [r for r in log if killed_at <= r[1] < back_at]
    answered = sum(1 for r in during if r[3])
    p99_before = percentile([r[2] * 1000 for r in before], 99)
    p99_during = percentile([r[2] * 1000 for r in during], 99)
    delivered = Counter(line["idempotency_key"] for line in read_ledger(ledger))
    duplicates = sum(1 for n in delivered.values() if n > 1)
    missing = len({r[0] for r in log if r[3]} - set(delivered)) + len({k for k, _, ok in http.log if ok} - set(delivered))
    http_during = [ok for _, sent, ok in http.log if killed_at <= sent < back_at]
    http_share = sum(http_during) / len(http_during) if http_during else 0.0
    share = answered / len(during) if during else 0.0
    ratio = p99_during / p99_before if p99_before else float("inf")
    rows = [
        ["head down (kill to its raylet back)", f"{back_at - killed_at:.1f} s (restart itself {back_at - restart_started:.1f} s)"],
        ["answered during the outage / sent (Python client)", f"{answered} / {len(during)} ({share:.1%})"],
        [f"answered during the outage / sent (HTTP, {worker}'s Serve proxy)",
         f"{sum(http_during)} / {len(http_during)} ({http_share:.1%})"],
        ["p99 during / p99 before", f"{p99_during:.1f} ms / {p99_before:.1f} ms = {ratio:.2f}"],
        ["head's return to `status` complete", f"{complete_after_s:.1f} s"],
        ["a new `status` during the outage", f"exit {refused.returncode} in {refused_s:.1f} s"],
        ["keys sent (client + HTTP) / delivered / duplicated / answered ok but missing",
         f"{len(log) + len(http.log)} / {len(delivered)} / {duplicates} / {missing}"],
    ]
    targets = [
        target("head loss: answered during the outage", share, 1.0, True, "{:.1%}"),
        target("head loss: HTTP answered during the outage", http_share, 1.0, True, "{:.1%}"),
        target("head loss: p99 during / before", ratio, 2.0, False, "{:.2f}"),
        target("head loss: head's return to status complete (s)", complete_after_s, None, False, "{:.1f}"),
    ]
    return write_results("head_loss", {"log_rows": len(log), "during": len(during), "answered": answered,
                                       "p99_before_ms": p99_before, "p99_during_ms": p99_during,
                                       "complete_after_s": complete_after_s, "refused_s": refused_s,
                                       "duplicates": duplicates, "missing": missing,
                                       "http_during": len(http_during), "http_answered": sum(http_during)},
                         rows, ["what", "measured"], title="The head node's loss under keyed traffic",
                         targets=targets, notes=[
                             f"{RATE_PER_S} keyed sends/s through Gateway.invoke from a detached actor on a worker; "
                             "GCS in Redis; the gateway placed by `up` with the default placement (off the head).",
                             "p99 'before' is from second 3 to the kill (the first seconds include the store's warm-up)."])


if __name__ == "__main__":
    print(main().read_text())
