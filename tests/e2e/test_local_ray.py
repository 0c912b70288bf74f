"""The private local Ray the demo and the benchmarks start: no "N PYTHON
worker processes have been started ... the maximum expected startup
concurrency" warning for a gateway's worth of actors (actors/deploy/local_ray.py).
Each run is a process of its own: one ray.init per process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.nodes import inherited_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WARNING = "worker processes have been started"
# 24 actors with a worker each, as a gateway of 7 capabilities and 16 providers has.
SCRIPT = """
import logging, sys, time
from pathlib import Path
import ray
from actors.deploy.local_ray import init_local
actors = 24
if sys.argv[1] == "sized":
    init_local(ray, actors=actors, num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
else:
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)

@ray.remote(num_cpus=0)
class Actor:
    def ping(self):
        return 1

handles = [Actor.remote() for _ in range(actors)]
ray.get([h.ping.remote() for h in handles], timeout=300)
time.sleep(3)  # the raylet's warning reaches the driver through the GCS
logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
print("raylet logs:", " ".join(p.read_text(errors="replace") for p in logs.glob("raylet*.out")).count("%s"))
ray.shutdown()
""" % WARNING


def run(mode: str) -> str:
    env = inherited_env()
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=600,
                          env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_a_gateway_s_worth_of_actors_starts_without_the_startup_concurrency_warning() -> None:
    out = run("sized")
    assert WARNING not in out and "raylet logs: 0" in out, out[-3000:]


def test_the_warning_is_what_a_plain_local_ray_prints_for_them() -> None:
    # The control: the same actors on a local Ray started as before do warn,
    # so the test above would see the warning if it came.
    out = run("plain")
    assert WARNING in out and "raylet logs: 0" not in out, out[-3000:]
