"""What the end-to-end tests share: a `ray start --head` cluster of their own
on free ports (tests/support/nodes.py, started once for the end-to-end tests by
tests/e2e/conftest.py), and running the CLI and other commands against it
as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 240, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def cli(cluster: dict, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run(str(BIN / "aicmo-gateway"), *args, env={**cluster["env"], **(env or {})})


@contextmanager
def ray_head() -> Iterator[dict]:
    """A `ray start --head` cluster of our own (tests/support/nodes.py):
    private ports, temp dir and token file, the dashboard on for `ray job
    submit`, stopped by signalling its processes (`ray stop` would stop
    every Ray cluster on the machine, the test session's too). Its head is
    started as the README's walkthrough starts one (the variables its
    `ray start --head` line sets), with token authentication on as `ray
    start` turns it on: the walkthrough's token run is one of its tests
    (`nodes`: the RayNodes itself)."""
    from tests.e2e.readme import walkthrough
    from tests.support.nodes import RayNodes

    head_env, _ = walkthrough()
    nodes = RayNodes(head_cpus=2, dashboard=True, env={"AICMO_NAMESPACE": "e2e"}, head_env=head_env)
    try:
        nodes.start()
        yield {"address": nodes.address, "dashboard": nodes.dashboard_url, "temp_dir": str(nodes.root),
               "metrics_port": nodes.nodes["head"].metrics_port, "nodes": nodes,
               "env": {**nodes.env, "PATH": f"{BIN}:{os.environ['PATH']}", "AICMO_NAMESPACE": "e2e"}}
    finally:
        nodes.shutdown()
