"""The multi-node cluster itself (tests/support/nodes.py): nodes that do not
share the state directory, placement by custom resources, and a node that
goes away. One cluster for the module (a head and node `b`); the last test
shuts it down and checks nothing is left."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodes import DriverError, RayNodes, processes_of

pytestmark = pytest.mark.nodes


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def cluster(ray_nodes: Any, state_dir: Path) -> RayNodes:
    cluster = ray_nodes(head_resources={"head": 100})
    cluster.add_node("b", resources={"isolated": 100}, private_dirs=[state_dir])
    return cluster


# Each task writes a file named after its node into the state directory and
# lists what it sees there; placement comes from the gateway's own config
# model, as the providers', routers' and supervisor's does.
WRITE_AND_LIST = """
import os, pathlib
from actors.config import ActorPlacement

@ray.remote
def write_and_list(state_dir, name):
    pathlib.Path(state_dir, "from-" + name).write_text(name)
    return ray.get_runtime_context().get_node_id(), sorted(os.listdir(state_dir))

on = {name: ActorPlacement(resources=resources).ray_options() for name, resources in ARGS["placement"].items()}
result({name: ray.get(write_and_list.options(**opts).remote(ARGS["state_dir"], name)) for name, opts in on.items()})
"""


def test_the_state_directory_is_not_shared(cluster: RayNodes, state_dir: Path) -> None:
    (state_dir / "from-test").write_text("the test process shares the head's view")
    seen = cluster.run_driver(WRITE_AND_LIST, args={
        "state_dir": str(state_dir), "placement": {"head": {"head": 1}, "b": {"isolated": 1}}})
    head_id, on_head = seen["head"]
    b_id, on_b = seen["b"]
    assert (head_id, b_id) == (cluster.head.node_id, cluster.node("b").node_id)
    assert on_head == ["from-head", "from-test"]  # the host's directory
    assert on_b == ["from-b"]  # b's own empty tmpfs
    assert sorted(p.name for p in state_dir.iterdir()) == ["from-head", "from-test"]
    # A driver (or the CLI) run as a user on machine b sees b's files, not the head's.
    assert cluster.run_driver("import os; result(sorted(os.listdir(ARGS)))", args=str(state_dir), on="b") == ["from-b"]


def test_resources_place_tasks_and_actors_on_the_chosen_node(cluster: RayNodes) -> None:
    where = cluster.run_driver("""
        from actors.config import ActorPlacement

        @ray.remote
        class Probe:
            def node(self):
                return ray.get_runtime_context().get_node_id()

        @ray.remote
        def node():
            return ray.get_runtime_context().get_node_id()

        placed = {}
        for name, resources in ARGS.items():
            opts = ActorPlacement(resources=resources).ray_options()
            actor = Probe.options(**opts).remote()
            placed[name] = {"actor": ray.get(actor.node.remote()),
                            "tasks": sorted(set(ray.get([node.options(**opts).remote() for _ in range(4)])))}
        placed["nodes"] = {n["NodeName"]: n["NodeID"] for n in ray.nodes() if n["Alive"]}
        result(placed)
        """, args={"head": {"head": 0.01}, "b": {"isolated": 0.01}})
    head, b = cluster.head.node_id, cluster.node("b").node_id
    assert where["head"] == {"actor": head, "tasks": [head]}
    assert where["b"] == {"actor": b, "tasks": [b]}
    assert where["nodes"] == {"head": head, "b": b}
    assert cluster.node("b").resources == {"CPU": 1.0, "isolated": 100}


def test_a_failing_driver_says_why(cluster: RayNodes) -> None:
    with pytest.raises(DriverError, match="ZeroDivisionError"):
        cluster.run_driver("1 / 0")


def test_the_cli_reaches_the_cluster_with_its_token(cluster: RayNodes) -> None:
    # Connected (token and address right), and found no gateway in an empty namespace.
    status = cluster.cli("status", "--namespace", "nothing-here")
    assert status.returncode == 2 and "is the gateway deployed" in status.stderr, status.stderr


def test_a_removed_node_is_marked_dead_and_leaves_nothing(cluster: RayNodes, tmp_path: Path) -> None:
    doomed = cluster.add_node("doomed", resources={"doomed": 1}, private_dirs=[tmp_path])
    assert doomed.processes()
    cluster.remove_node(doomed)  # SIGKILL, then waits until the GCS counts it dead
    assert doomed.processes() == [] and not doomed.alive and "doomed" not in cluster.nodes
    alive = cluster.alive_node_ids()
    assert doomed.node_id not in alive and {cluster.head.node_id, cluster.node("b").node_id} <= alive
    assert cluster.head.processes() and cluster.node("b").processes()  # the others keep running


def test_shutdown_stops_every_process_and_removes_its_directory(cluster: RayNodes) -> None:
    """Last in the module: it ends the shared cluster."""
    leaders = [n.process for n in cluster.nodes.values()]
    assert processes_of(cluster)
    cluster.shutdown()
    assert processes_of(cluster) == []
    assert all(p.poll() is not None for p in leaders)
    assert not cluster.root.exists()
    assert cluster.gcs_port and subprocess.run(["pgrep", "-f", str(cluster.root)], capture_output=True).returncode == 1

