"""The head node's loss and return (tests/support/nodes.py): a head with no
CPUs whose GCS keeps the cluster's metadata in Redis (or RocksDB), a worker
node with an address of its own, the head's process group SIGKILLed and
started again on the same port with the same storage.

One cluster for the module (the head and node `w`, GCS in the session's
Redis); the RocksDB test starts a head of its own; the last test shuts the
shared cluster down and checks nothing is left, network included.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodes import GcsStorage, NodeError, RayNodes, processes_of, wait_for

pytestmark = pytest.mark.nodes

ON_W = {"w": 0.01}

# A target and a caller, both detached and pinned to `w`: the caller keeps
# calling the target through the handle it holds and keeps what it got, to be
# read by a driver once the head is back.
ACTORS = """
import os, threading, time

@ray.remote(num_cpus=0, max_restarts=-1)
class Target:
    def call(self, i):
        return i, os.getpid()

@ray.remote(num_cpus=0, max_restarts=-1)
class Caller:
    def __init__(self, target):
        self.target, self.log, self.stop = target, [], False

    def start(self, period_s):
        def loop():
            i = 0
            while not self.stop:
                sent = time.time()
                try:
                    ray.get(self.target.call.remote(i), timeout=10)
                    self.log.append((sent, True))
                except Exception as exc:
                    self.log.append((sent, type(exc).__name__))
                i += 1
                time.sleep(period_s)
        threading.Thread(target=loop, daemon=True).start()

    def results(self, stop=False):
        self.stop = stop
        return self.log
"""


@pytest.fixture(scope="module")
def cluster(ray_nodes: Any, redis: Any) -> RayNodes:
    cluster = ray_nodes(head_cpus=0, gcs=GcsStorage.redis(redis.address, namespace=f"support-{time.time_ns()}"),
                        gcs_reconnect_timeout_s=120)
    cluster.add_node("w", resources={"w": 100}, own_ip=True)
    return cluster


def test_a_node_with_its_own_address_takes_the_drivers_run_on_it(cluster: RayNodes) -> None:
    w = cluster.node("w")
    assert w.ip and w.ip.startswith("10.200.") and cluster.head.ip is None
    seen = cluster.run_driver("""
        nodes = {n["NodeName"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
        result({"me": ray.get_runtime_context().get_node_id(), "nodes": nodes})
        """, on="w")
    assert seen["me"] == w.node_id
    assert seen["nodes"]["w"] == w.ip and seen["nodes"]["head"] != w.ip
    # Any other driver attaches to the head.
    assert cluster.run_driver("result(ray.get_runtime_context().get_node_id())") == cluster.head.node_id


def test_detached_actors_on_a_worker_serve_through_the_heads_loss_and_are_there_after(cluster: RayNodes) -> None:
    w = cluster.node("w")
    pid = cluster.run_driver(ACTORS + textwrap.dedent("""
        target = Target.options(name="target", lifetime="detached", resources=ARGS).remote()
        caller = Caller.options(name="caller", lifetime="detached", resources=ARGS).remote(target)
        ray.get(caller.start.remote(0.05))
        result(ray.get(target.call.remote(0))[1])
        """), args=ON_W, namespace="restart")
    old_head, port = cluster.head, cluster.gcs_port

    cluster.kill_head()
    killed_at = time.time()
    assert cluster.head_down and old_head.processes() == [] and w.processes()
    with pytest.raises(NodeError, match="the head is down"):
        cluster.head  # noqa: B018
    # Nothing answers at the head's GCS port (a new driver would wait for it for minutes).
    with pytest.raises(OSError):
        __import__("socket").create_connection(("127.0.0.1", port), timeout=2).close()

    head = cluster.restart_head()
    back_at = time.time()
    assert cluster.gcs_port == port and head.node_id != old_head.node_id and not cluster.head_down
    cluster.wait_for_nodes(alive=[head.node_id, w.node_id], dead=[old_head.node_id], timeout_s=60)

    answer = cluster.run_driver("""
        target, caller = ray.get_actor("target"), ray.get_actor("caller")
        result({"pid": ray.get(target.call.remote(1))[1], "log": ray.get(caller.results.remote(stop=True))})
        """, namespace="restart")
    assert answer["pid"] == pid  # the same process: it lived through it
    during = [ok for sent, ok in answer["log"] if killed_at < sent < back_at]
    assert during and all(ok is True for ok in during), during


def test_a_driver_started_during_the_outage_waits_for_the_gcs(cluster: RayNodes, tmp_path: Path) -> None:
    """What callers see: Ray does not fail a new driver fast, it waits (so a
    client must check the GCS before ray.init). Asserted: it is still waiting
    while the head is down, and connects once it is back."""
    out = tmp_path / "driver.out"
    cluster.kill_head()
    try:
        driver = cluster.popen([sys.executable, "-c", (
            "import logging, os, ray\n"
            "ray.init(logging_level=logging.ERROR, log_to_driver=False, _node_ip_address=os.environ['AICMO_NODE_IP'])\n"
            "print('connected', ray.get_runtime_context().get_node_id())\n")],
            on="w", env={"RAY_AUTH_MODE": "token"},  # a plain Ray driver naming an address must set it (Ray 2.60)
            stdout=open(out, "w"), stderr=subprocess.DEVNULL)
        # Whatever the driver does first, it cannot connect while there is no GCS.
        with pytest.raises(subprocess.TimeoutExpired):
            driver.wait(5)
    finally:
        cluster.restart_head()
    assert driver.wait(120) == 0
    assert f"connected {cluster.node('w').node_id}" in out.read_text().splitlines()


def test_the_gcs_keeps_its_state_in_redis(cluster: RayNodes, redis: Any) -> None:
    assert cluster.gcs is not None and redis.keys(f"RAY{cluster.gcs.namespace}*")


def test_rocksdb_keeps_a_head_only_cluster_across_a_restart(ray_nodes: Any, tmp_path: Path) -> None:
    """Ray 2.60's embedded RocksDB (alpha): the directory outlives the head."""
    storage = tmp_path / "gcs"
    single = ray_nodes(isolated=False, head_cpus=0, gcs=GcsStorage.rocksdb(storage))
    try:
        pid = single.run_driver("""
            import os
            @ray.remote(num_cpus=0, max_restarts=-1)
            class Keeper:
                def pid(self):
                    return os.getpid()
            k = Keeper.options(name="keeper", lifetime="detached").remote()
            result(ray.get(k.pid.remote()))
            """, namespace="rocks")
        assert (storage / "session_name").exists()
        single.kill_head()
        single.restart_head()
        # The actor lived on the head and died with it; the GCS remembers it and Ray starts it again.
        answer = wait_for(lambda: single.run_driver(
            "result(ray.get(ray.get_actor('keeper').pid.remote(), timeout=30))", namespace="rocks", timeout_s=90),
            timeout_s=120, what="the detached actor answering after the restart")
        assert answer != pid
    finally:
        single.shutdown()


def test_shutdown_removes_processes_and_the_network(cluster: RayNodes) -> None:
    """Last in the module: it ends the shared cluster."""
    w = cluster.node("w")
    assert w.netns is not None
    network = cluster._network
    assert network is not None
    cluster.shutdown()
    assert processes_of(cluster) == []
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert w.netns.name not in spaces and w.netns.veth not in links and f"{network.bridge}:" not in links
    assert not cluster.root.exists()
