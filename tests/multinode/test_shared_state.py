"""The delivery guarantees on Ray nodes that do not share a disk.

One cluster for the module (tests/support/nodes.py), all on this machine
but each worker node in a mount namespace of its own, with an empty tmpfs
over the state directory, as separate machines would be:

- the head (`head`): the supervisor, and the drivers;
- `b` (`providers`): the provider actors the tests place there;
- `c` and `d` (`routers`): the routers, so the node hosting one can be
  removed while the other takes over.

With a state directory, `up` refuses the split (exit 2, naming state.url
and the nodes). With PostgreSQL (a real server, tests/support/postgres.py),
queued requests written on one node are listed and drained on another, a
router settles an unknown outcome another node's provider journaled, and
losing the router's node mid-traffic delivers every keyed request exactly
once (the simulated providers' ledger, on a path every node shares).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.faults.accounting import read_ledger, sim
from tests.support.nodes import RayNodes

pytestmark = pytest.mark.nodes

ON_HEAD = {"resources": {"head": 0.01}}
ON_B = {"resources": {"providers": 0.01}}
ON_ROUTER_NODES = {"resources": {"routers": 0.01}}
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}

# The drivers import the test helpers from the checkout.
PRELUDE = """
import sys, os, time
sys.path.insert(0, os.getcwd())
from actors.specs import router_name
"""


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def cluster(ray_nodes: Any, state_dir: Path) -> RayNodes:
    cluster = ray_nodes(head_resources={"head": 100})
    private = [state_dir]
    cluster.add_node("b", resources={"providers": 100}, private_dirs=private)
    cluster.add_node("c", resources={"routers": 100}, private_dirs=private)
    cluster.add_node("d", resources={"routers": 100}, private_dirs=private)
    return cluster


def write_config(path: Path, namespace: str, state_url: str, capabilities: dict[str, Any],
                 placement: dict[str, Any] | None = None, **extra: Any) -> Path:
    config = {"namespace": namespace, "state": {"url": state_url},
              "supervisor": {"check_interval_s": 0, "drain_interval_s": 0.3, "drain_rate_per_s": 200,
                             "probe_all_nodes": False},
              "placement": placement or {"supervisor": ON_HEAD, "routers": ON_HEAD, "providers": ON_B},
              "capabilities": capabilities, **extra}
    path.write_text(yaml.safe_dump(config))
    return path


def pg_url(db: Any) -> str:
    """The database's URL with the password as a reference, read when `up` loads the file."""
    return db.url.replace("aicmo@", "aicmo:${AICMO_TEST_PG_PASSWORD}@", 1)


def up(cluster: RayNodes, config: Path, db: Any = None) -> Any:
    env = {"AICMO_TEST_PG_PASSWORD": db.password} if db is not None else {}
    return cluster.cli("up", "--config", str(config), env=env)


def down(cluster: RayNodes, namespace: str) -> None:
    cluster.cli("down", "--namespace", namespace)


def test_up_refuses_a_state_directory_the_nodes_do_not_share(cluster: RayNodes, state_dir: Path,
                                                              tmp_path: Path) -> None:
    caps = {"email_sending": {"providers": [
        {"name": "primary", "adapter": "simulated", "settings": sim(tmp_path / "ledger.jsonl")},
        {"name": "outbox", "adapter": "outbox"}]}}
    config = write_config(tmp_path / "split.yaml", "split", str(state_dir), caps)
    done = up(cluster, config)
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(state_dir) in done.stderr and "is not shared by the nodes" in done.stderr
    b = cluster.node("b")
    assert b.node_id[:8] in done.stderr  # the node that does not see it is named
    assert "postgresql://" in done.stderr  # and the fix
    listed = cluster.cli("status", "--namespace", "split")
    assert listed.returncode != 0  # nothing was deployed

    doctor = cluster.cli("doctor", "--config", str(config))
    assert doctor.returncode == 1 and "is not shared by the nodes" in doctor.stdout

    # Every actor pinned to the head: nothing to share, accepted.
    pinned = write_config(tmp_path / "pinned.yaml", "pinned", str(state_dir), caps,
                          placement={"supervisor": ON_HEAD, "routers": ON_HEAD, "providers": ON_HEAD})
    try:
        done = up(cluster, pinned)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        down(cluster, "pinned")


def test_requests_queued_on_one_node_are_listed_and_drained_once_from_another(
        cluster: RayNodes, postgres_database: Any, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    caps = {"email_sending": {"providers": [
        {"name": "primary", "adapter": "simulated", "settings": sim(ledger, failure_rate=1.0)},
        {"name": "outbox", "adapter": "outbox"}]}}
    config = write_config(tmp_path / "pg.yaml", "queued", pg_url(postgres_database), caps,
                          policy={"health": {"cooldown_s": 0.5}})
    done = up(cluster, config, postgres_database)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        keys = [f"q{i}" for i in range(5)]
        answers = cluster.run_driver(PRELUDE + """
router = ray.get_actor(router_name("email_sending"), namespace="queued")
out = []
for key in ARGS["keys"]:
    res = ray.get(router.invoke.remote("send_email", dict(ARGS["email"], subject=key), idempotency_key=key))
    out.append([res.ok, res.provider, res.outbox_id])
outbox_node = ray.get(ray.get_actor("provider:email_sending:outbox", namespace="queued").node_id.remote())
result({"answers": out, "outbox_node": outbox_node})
""", args={"keys": keys, "email": EMAIL})
        assert answers["outbox_node"] == cluster.node("b").node_id  # queued through node b
        assert all(ok and provider == "outbox" and item for ok, provider, item in answers["answers"])

        listed = cluster.cli("outbox", "list", "--namespace", "queued", "--json")  # from the head
        assert listed.returncode == 0, listed.stderr
        assert sorted(i["idempotency_key"] for i in json.loads(listed.stdout)) == keys

        cluster.run_driver(PRELUDE + """
ray.get(ray.get_actor("provider:email_sending:primary", namespace="queued").inject_fault.remote(failure_rate=0.0))
result(True)
""")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = json.loads(cluster.cli("outbox", "list", "--namespace", "queued", "--json").stdout)
            if not left:
                break
            time.sleep(0.5)
        assert left == []
        delivered = sorted(line["idempotency_key"] for line in read_ledger(ledger))
        assert delivered == keys  # each exactly once
    finally:
        down(cluster, "queued")


def test_a_router_settles_an_unknown_outcome_a_provider_on_another_node_journaled(
        cluster: RayNodes, postgres_database: Any, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    caps = {"email_sending": {"providers": [
        # The primary (on b) takes 3 s to send: it is killed mid-send, its journal saying `started`.
        {"name": "primary", "adapter": "simulated", "settings": sim(ledger, latency_ms=3000, latency_jitter_ms=0)},
        {"name": "backup", "adapter": "simulated", "settings": sim(ledger, seed=2),
         "placement": ON_HEAD}]}}
    config = write_config(tmp_path / "pg.yaml", "unknown", pg_url(postgres_database), caps)
    done = up(cluster, config, postgres_database)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        found = cluster.run_driver(PRELUDE + """
router = ray.get_actor(router_name("email_sending"), namespace="unknown")
primary = ray.get_actor("provider:email_sending:primary", namespace="unknown")
first = router.invoke.remote("send_email", ARGS["email"], idempotency_key="k-unknown")
deadline = time.monotonic() + 60
while ray.get(primary.status.remote(), timeout=30).in_flight < 1:  # journaled `started` first, then under way
    assert time.monotonic() < deadline, "the send never reached the primary"
    time.sleep(0.05)
ray.kill(primary, no_restart=False)   # the provider's process dies mid-send...
ray.kill(router, no_restart=False)    # ...and so does the router that was waiting for it
try:
    ray.get(first)
    lost = False
except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
    lost = True
deadline = time.monotonic() + 60
while True:  # the caller sends it again with its key, as a careful client does
    try:
        res = ray.get(router.invoke.remote("send_email", ARGS["email"], idempotency_key="k-unknown"), timeout=60)
        break
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
        assert time.monotonic() < deadline
        time.sleep(0.3)
counters = ray.get(router.counters.remote())
result({"lost": lost, "ok": res.ok, "provider": res.provider, "replayed": res.replayed, "counters": counters,
        "attempts": [[a.provider, a.ok] for a in res.attempts]})
""", args={"email": EMAIL})
        assert found["lost"] and found["ok"], found
        # The new router read the primary's journal entry (written on node b) and asked the primary, which
        # settled it from its own records: not delivered, so it was sent once, wherever.
        assert found["counters"].get("resolved_not_delivered", 0) >= 1, found
        assert [line["idempotency_key"] for line in read_ledger(ledger)] == ["k-unknown"]
    finally:
        down(cluster, "unknown")


TWICE = PRELUDE + """
from actors.names import router_replica_name
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}
replicas = [ray.get_actor(router_replica_name("email_sending", i), namespace="twice") for i in (0, 1)]
nodes = ray.get([r.node_id.remote() for r in replicas])
keys = [f"twice-{i}" for i in range(ARGS["n"])]
refs = [r.invoke.remote("send_email", {**EMAIL, "subject": k}, idempotency_key=k, deadline_s=30)
        for k in keys for r in replicas]
answers = ray.get(refs, timeout=180)
result({"nodes": nodes, "answers": [[a.ok, a.replayed, a.idempotency_key] for a in answers]})
"""


def test_two_router_replicas_on_two_nodes_deliver_a_key_sent_to_both_at_once_once(
        cluster: RayNodes, postgres_database: Any, tmp_path: Path) -> None:
    """On a cluster of several nodes `auto` runs two replicas, spread over the
    nodes that may host routers; their claims meet in PostgreSQL."""
    ledger = tmp_path / "ledger.jsonl"
    caps = {"email_sending": {"providers": [
        {"name": "primary", "adapter": "simulated", "settings": sim(ledger, latency_ms=20)}]}}
    config = write_config(tmp_path / "twice.yaml", "twice", pg_url(postgres_database), caps,
                          placement={"supervisor": ON_HEAD, "routers": ON_ROUTER_NODES, "providers": ON_B})
    done = up(cluster, config, postgres_database)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        outcome = cluster.run_driver(TWICE, args={"n": 40}, timeout_s=240)
        assert set(outcome["nodes"]) == {cluster.node("c").node_id, cluster.node("d").node_id}
        answers = outcome["answers"]
        assert all(ok for ok, _, _ in answers), [a for a in answers if not a[0]][:5]
        assert sum(replayed for _, replayed, _ in answers) == 40   # one of each pair replayed the other
        delivered: dict[str, int] = {}
        for line in read_ledger(ledger):
            delivered[line["idempotency_key"]] = delivered.get(line["idempotency_key"], 0) + 1
        assert len(delivered) == 40 and set(delivered.values()) == {1}
        status = cluster.cli("status", "--namespace", "twice")
        assert "routers: " in status.stdout and "2 of 2 alive" in status.stdout, status.stdout
    finally:
        down(cluster, "twice")


TRAFFIC = PRELUDE + """
from tests.faults.accounting import CarefulCaller, request_for
requests = [request_for("email_sending", i, "loss") for i in range(ARGS["n"])]
caller = CarefulCaller(ray, "loss", window=16, retry_delay_s=0.3)
results = caller.run(requests, pace_s=0.02, timeout_s=150)
result({"results": {k: [r.ok, r.provider, r.outbox_id] for k, r in results.items()},
        "resent_after_router_loss": caller.stats.resent_after_router_loss, "gave_up": caller.stats.gave_up})
"""


def test_losing_the_routers_node_mid_traffic_delivers_every_keyed_request_once(
        cluster: RayNodes, postgres_database: Any, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    caps = {"email_sending": {"providers": [
        {"name": "primary", "adapter": "simulated", "settings": sim(ledger, latency_ms=20)},
        {"name": "backup", "adapter": "simulated", "settings": sim(ledger, seed=2, latency_ms=20)}]}}
    config = write_config(tmp_path / "pg.yaml", "loss", pg_url(postgres_database), caps,
                          placement={"supervisor": ON_HEAD, "routers": ON_ROUTER_NODES, "providers": ON_B},
                          policy={"routing": {"deadline_s": 20}})
    done = up(cluster, config, postgres_database)
    assert done.returncode == 0, done.stdout + done.stderr
    n = 240
    outcome: dict[str, Any] = {}

    def traffic() -> None:
        try:
            outcome.update(cluster.run_driver(TRAFFIC, args={"n": n}, timeout_s=240))
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            outcome["error"] = repr(exc)

    try:
        router_node = cluster.run_driver(PRELUDE + """
result(ray.get(ray.get_actor(router_name("email_sending"), namespace="loss").node_id.remote()))
""")
        victim = next(name for name in ("c", "d") if cluster.node(name).node_id == router_node)
        runner = threading.Thread(target=traffic)
        runner.start()
        deadline = time.monotonic() + 120
        while len(read_ledger(ledger)) < n // 3 and time.monotonic() < deadline and runner.is_alive():
            time.sleep(0.1)
        cluster.remove_node(victim)  # the machine hosting the router goes away, mid-traffic
        runner.join(timeout=300)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["gave_up"] == 0 and outcome["resent_after_router_loss"] > 0
        answers = outcome["results"]
        assert len(answers) == n and all(ok for ok, _, _ in answers.values())
        delivered: dict[str, int] = {}
        for line in read_ledger(ledger):
            delivered[line["idempotency_key"]] = delivered.get(line["idempotency_key"], 0) + 1
        assert sorted(delivered) == sorted(answers) and set(delivered.values()) == {1}
    finally:
        down(cluster, "loss")
