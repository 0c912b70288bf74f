"""`doctor` on a multi-node cluster says whether it survives its head node
(actors/ops/gcs.py; issue 19, item 5).

One cluster for the module: a head whose GCS is kept in a Redis of the
module's own (a RedisServer it may kill), a worker node with Ray's default
reconnect timeout and a disk of its own, and a gateway whose state is a
SQLite file. `doctor`
finds the GCS fault tolerant, names the worker that would give up on a
head down longer than 60 s, and flags the file state as critical. Then the
Redis dies: `doctor` run as on the head's machine (RAY_REDIS_ADDRESS set,
`--no-ray`) says it does not answer.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.nodes import GcsStorage, RayNodes

pytestmark = pytest.mark.nodes


@pytest.fixture(scope="module")
def own_redis() -> Any:
    from tests.support.redis import RedisServer, unavailable_reason

    if (why := unavailable_reason()) is not None:
        pytest.skip(why)
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def cluster(ray_nodes: Any, own_redis: Any, state_dir: Path) -> RayNodes:
    cluster = ray_nodes(head_cpus=1,
                        gcs=GcsStorage.redis(own_redis.address, namespace=f"findings-{uuid.uuid4().hex[:6]}"))
    cluster.add_node("w", resources={"w": 100}, private_dirs=[state_dir])  # another machine's disk
    return cluster


def doctor(cluster: RayNodes, config: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = cluster.cli("doctor", "--config", str(config), "--json", *args, env=env)
    assert done.returncode in (0, 1) and done.stdout.strip(), f"exit {done.returncode}: {done.stdout}{done.stderr}"
    return json.loads(done.stdout)


def head(found: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["status"], f["subject"]) for f in found["findings"] if f["check"] == "head"]


def test_doctor_reports_the_gcs_the_workers_wait_and_file_state_then_a_dead_redis(
        cluster: RayNodes, own_redis: Any, state_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"namespace": "findings", "state": {"url": f"sqlite:///{state_dir / 's.db'}"},
                                      "capabilities": {"email_sending": {"providers": [
                                          {"name": "sim", "adapter": "simulated"}]}}}))
    found = doctor(cluster, config)
    statuses = head(found)
    assert ("ok", f"GCS storage: redis at {own_redis.address}, namespace {cluster.gcs.namespace}") in statuses, \
        statuses
    waits = [f for f in found["findings"] if f["subject"] == "worker nodes' GCS reconnect timeout"]
    assert [f["status"] for f in waits] == ["warning"] and "(default 60 s)" in waits[0]["detail"]
    [state] = [f for f in found["findings"] if f["check"] == "head" and f["subject"].startswith("state.url")]
    assert state["status"] == "problem" and "postgresql://" in state["fix"]  # critical: a file on one machine

    # The Redis dies. Through the cluster the answer is a race with the GCS, which exits once it
    # gives up on its Redis (and `ray.init` against a dying GCS may abort the process): asserted
    # without a cluster, as an operator on the head's machine runs it.
    own_redis.kill()
    offline = doctor(cluster, config, "--no-ray", env={"RAY_REDIS_ADDRESS": own_redis.address})
    assert [(f["status"], f["subject"]) for f in offline["findings"] if f["check"] == "head"] == [
        ("problem", f"GCS Redis {own_redis.address}")]
    assert offline["ok"] is False
