"""Node loss on a three-node local cluster: the node hosting every provider
actor is removed mid-traffic; the providers come back on another node and
every request is accounted for (tests/faults/node_loss.py does the work).

It runs in a subprocess, not in this pytest process: a process can hold one
`ray.init`, and this session's shared cluster (`ray_cluster`) may already be
connected, whatever the order tests run in; a multi-node `Cluster` of its
own, under a private RAY_TMPDIR, also never touches the session's cluster
or the machine's /tmp/ray/ray_current_cluster. A hang is bounded by the
subprocess's timeout, and its whole process group is killed then.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.nodes import inherited_env

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]


def run_node_loss(requests: int, timeout_s: float = 420) -> dict:
    ray_tmp = tempfile.mkdtemp(prefix="aicmo-nl-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**inherited_env(), "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.faults.node_loss", "--json", f"--requests={requests}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the node-loss run did not finish in {timeout_s}s:\n{err[-3000:]}")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"no report (exit {proc.returncode}):\n{err[-3000:]}"
    return json.loads(lines[-1])


def test_losing_the_node_of_every_provider_mid_traffic_loses_and_doubles_nothing() -> None:
    report = run_node_loss(requests=300)
    print(json.dumps({k: report[k] for k in ("verdict", "removed", "router_counters", "caller", "timings")}))
    assert report["problems"] == [], report["problems"]
    assert report["outbox_drained"], report["verdict"]
    providers = [name for name in report["before"] if name.startswith("provider:")]
    assert len(providers) == 8
    assert {report["before"][p] for p in providers} == {"doomed"}, report["before"]
    # Every provider came back, on the spare node, under its name; the rest never moved.
    assert {report["after"][p] for p in providers} == {"spare"}, report["after"]
    assert all(report["after_state"][p] == "ALIVE" and report["restarts"][p] >= 1 for p in providers), report
    assert {v for k, v in report["after"].items() if not k.startswith("provider:")} == {"head"}
    # The loss hit traffic: requests were answered before and after it.
    assert 0 < report["removed"]["answered"] < 300
