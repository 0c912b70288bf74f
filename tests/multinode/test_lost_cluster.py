"""A whole cluster lost without GCS fault tolerance, and the gateway rebuilt
from PostgreSQL on a fresh one by `up` (issue 19, item 4; README "Surviving
the head node").

Two clusters in sequence, on one PostgreSQL database and one ledger (the
simulated provider's record of what it delivered, the provider's side of
the truth). On the first: keys delivered, keys queued in the outbox while
a webhook endpoint fails (a live fault: it dies with the cluster), then
keyed traffic, and the whole cluster SIGKILLed in the middle of it. Between
the two, a request parked `outcome_unknown`. On the second: `up` with the
same file; the queue drains once, the parked request is settled, every key
resent by its caller is replayed or sent once: 0 lost, 0 duplicated, and
the spend continues from what the first cluster charged.

The parked request is written as a router parks one (outbox `parked`,
reason `outcome_unknown`, its send journaled `started` by a process that is
gone), not produced by a provider that cannot tell what happened: the
simulated provider always can, from its ledger, and the restore is what
this module tests.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.faults.accounting import read_ledger, sim
from tests.support.nodes import wait_for

pytestmark = pytest.mark.nodes

NS = "lost"
PRICE = "0.01"
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}
PRELUDE = """
import sys, os, time
sys.path.insert(0, os.getcwd())
from actors.specs import router_name
"""
TRAFFIC = PRELUDE + """
from tests.faults.accounting import CarefulCaller, request_for
requests = [request_for("email_sending", i, "t") for i in range(ARGS["n"])]
caller = CarefulCaller(ray, ARGS["ns"], window=ARGS["window"], retry_delay_s=0.3)
results = caller.run(requests, pace_s=ARGS["pace_s"], timeout_s=240)
result({"results": {k: [r.ok, r.provider, bool(r.replayed)] for k, r in results.items()},
        "gave_up": caller.stats.gave_up})
"""


def config(path: Path, db: Any, ledger: Path) -> Path:
    url = db.url.replace("aicmo@", "aicmo:${AICMO_TEST_PG_PASSWORD}@", 1)
    path.write_text(yaml.safe_dump({
        "namespace": NS, "state": {"url": url},
        "supervisor": {"check_interval_s": 0, "drain_interval_s": 0.3, "drain_rate_per_s": 200,
                       "probe_all_nodes": False},
        "policy": {"health": {"cooldown_s": 0.5}},
        "capabilities": {"email_sending": {"providers": [
            {"name": "primary", "adapter": "simulated", "settings": sim(ledger, latency_ms=10),
             "cost": {"per_call": PRICE, "currency": "USD"}, "quota": {"limit": 100000, "per": "month"}},
            {"name": "outbox", "adapter": "outbox"}]},
            "webhook_dispatch": {"providers": [
                {"name": "hook", "adapter": "simulated", "settings": sim(ledger, seed=3)},
                {"name": "outbox", "adapter": "outbox"}]}}}))
    return path


def up(cluster: Any, path: Path, db: Any) -> subprocess.CompletedProcess[str]:
    done = cluster.cli("up", "--config", str(path), env={"AICMO_TEST_PG_PASSWORD": db.password})
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def outbox(cluster: Any) -> list[dict[str, Any]]:
    listed = cluster.cli("outbox", "list", "--namespace", NS, "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def park_an_unknown_outcome(db: Any, key: str) -> None:
    """What a router leaves when its provider could not tell whether a send went out."""
    from actors.durable import JournalEntry, open_store

    async def park() -> None:
        store = open_store(db.url, NS, password=db.password)
        now = time.time()
        await store.journal_put_many([JournalEntry(
            capability="email_sending", provider="primary", key=key, request_id="r-parked", method="send_email",
            state="started", incarnation="a-process-of-the-lost-cluster", updated_at=now)])
        item = await store.outbox_add(capability="email_sending", method="send_email", payload=EMAIL,
                                      idempotency_key=key, request_id="r-parked", reason="outcome_unknown", now=now,
                                      provider="primary", error="primary: the attempt was cut off")
        await store.outbox_update(item.id, now, state="parked")
        await store.close()

    asyncio.run(park())


def spend_of_primary(cluster: Any) -> dict[str, Any]:
    return cluster.run_driver(PRELUDE + """
s = ray.get(ray.get_actor("provider:email_sending:primary", namespace=ARGS["ns"]).status.remote())
result({"spend": s.spend, "quota_left": s.quota_left})
""", args={"ns": NS})


def test_a_lost_cluster_is_rebuilt_from_postgresql_by_up_losing_and_doubling_nothing(
        ray_nodes: Any, postgres_database: Any, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    path = config(tmp_path / "gateway.yaml", postgres_database, ledger)

    # --- the first cluster: delivered keys, a queue, a parked outcome, traffic; then lost whole ---------------
    # Its caller (a driver) finds its cluster gone once it stops waiting for the GCS: 10 s, not Ray's default
    # 60 s, which this test spent waiting for the caller after the loss (nothing of this cluster comes back).
    first = ray_nodes(isolated=False, head_cpus=2, gcs_reconnect_timeout_s=10)
    up(first, path, postgres_database)
    first.run_driver(PRELUDE + """
router = ray.get_actor(router_name("email_sending"), namespace=ARGS["ns"])
for i in range(10):
    r = ray.get(router.invoke.remote("send_email", dict(ARGS["email"], subject=f"d{i}"), idempotency_key=f"d{i}"))
    assert r.ok and r.provider == "primary", r
# The webhook endpoint fails (a live fault: it lives in the provider's memory): requests are queued.
hook = ray.get_actor("provider:webhook_dispatch:hook", namespace=ARGS["ns"])
ray.get(hook.inject_fault.remote(failure_rate=1.0))
hooks = ray.get_actor(router_name("webhook_dispatch"), namespace=ARGS["ns"])
from tests.faults.accounting import request_for
for i in range(10):
    q = request_for("webhook_dispatch", i, "q")
    r = ray.get(hooks.invoke.remote(q.method, q.payload, idempotency_key=q.key))
    assert r.ok and r.provider == "outbox" and r.outbox_id, r
result(True)
""", args={"ns": NS, "email": EMAIL})
    queued = [f"q-webhook_dispatch-{i}" for i in range(10)]
    assert sorted(i["idempotency_key"] for i in outbox(first)) == sorted(queued)

    n, window = 150, 8
    outcome: dict[str, Any] = {}

    def traffic() -> None:  # a caller on the first cluster, sending when the cluster dies
        try:
            outcome.update(first.run_driver(TRAFFIC, args={"n": n, "ns": NS, "window": window, "pace_s": 0.02},
                                            timeout_s=150))
        except Exception as exc:  # noqa: BLE001 - expected: its cluster dies under it
            outcome["error"] = repr(exc)[:300]

    runner = threading.Thread(target=traffic)
    runner.start()
    try:
        wait_for(lambda: len([x for x in read_ledger(ledger) if x["idempotency_key"].startswith("t-")]) >= n // 3
                 or not runner.is_alive(), timeout_s=180, what="a third of the traffic delivered")
        assert runner.is_alive(), outcome
        first.kill_head()  # the whole cluster: a head-only cluster, every process of it SIGKILLed
        # The second cluster starts while the caller waits out the lost GCS (10 s), instead of after:
        # a fresh cluster on ports of its own, which the first cluster's caller never reaches.
        second = ray_nodes(isolated=False, head_cpus=2)
    finally:
        runner.join(timeout=200)
    assert "error" in outcome  # the caller lost its cluster mid-traffic
    first.shutdown()
    park_an_unknown_outcome(postgres_database, "parked")  # left by a router of the lost cluster
    before = read_ledger(ledger)
    delivered_before = {x["idempotency_key"] for x in before}
    left_queued = {i["idempotency_key"] for i in _outbox_rows(postgres_database)}
    assert left_queued == {*queued, "parked"}

    # --- the second cluster (started above): `up` with the same file restores the gateway from PostgreSQL -------
    missing = second.cli("status", "--namespace", NS)
    assert missing.returncode != 0  # nothing of the gateway on a fresh cluster
    started = time.monotonic()
    up(second, path, postgres_database)
    up_s = time.monotonic() - started
    wait_for(lambda: outbox(second) == [], timeout_s=120, what="the outbox drained and the parked item settled")
    drained_s = time.monotonic() - started
    print(f"\nfrom `up` to the outbox drained: {drained_s:.1f} s (`up` itself {up_s:.1f} s; "
          f"{len(left_queued)} items left by the lost cluster)")

    # Every caller resends what it had in flight, with its keys; the earlier ones too.
    again = second.run_driver(TRAFFIC, args={"n": n, "ns": NS, "window": window, "pace_s": 0.0}, timeout_s=300)
    assert again["gave_up"] == 0
    assert len(again["results"]) == n and all(ok for ok, _, _ in again["results"].values())
    replayed = {k for k, (_, _, was) in again["results"].items() if was}
    assert {f"t-email_sending-{i}" for i in range(n)} & delivered_before <= replayed  # replayed, not sent again

    final = read_ledger(ledger)
    counts: dict[str, int] = {}
    for line in final:
        counts[line["idempotency_key"]] = counts.get(line["idempotency_key"], 0) + 1
    expected = {f"d{i}" for i in range(10)} | set(queued) | {f"t-email_sending-{i}" for i in range(n)}
    assert expected <= set(counts), sorted(expected - set(counts))  # 0 lost
    assert {k: c for k, c in counts.items() if c > 1} == {}  # 0 duplicated
    # The parked request was settled from the primary's records (not in its ledger: never sent), then sent once.
    assert counts.get("parked") == 1
    print(f"ledger: {len(final)} deliveries, {len(counts)} keys, {len(delivered_before)} before the loss, "
          f"{len(replayed)} replayed")

    # Spend continues: what the first cluster charged (with each journaled outcome) plus what the second did.
    # Sends cut off by the loss and settled `delivered` afterwards were never charged: at most the window.
    sent = len([line for line in final if line["provider"] == "primary"])
    spent = spend_of_primary(second)
    charged = round(spent["spend"] / float(PRICE))
    print(f"spend: {spent['spend']:.2f} USD for {sent} deliveries by primary ({charged} charged)")
    assert sent - window - 1 <= charged <= sent


def _outbox_rows(db: Any) -> list[Any]:
    from actors.durable import open_store

    async def rows() -> list[Any]:
        store = open_store(db.url, NS, password=db.password)
        try:
            return await store.outbox_list()
        finally:
            await store.close()

    return [{"idempotency_key": i.idempotency_key, "state": i.state} for i in asyncio.run(rows())]

