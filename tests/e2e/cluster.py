"""What the end-to-end tests share: a `ray start --head` cluster of their own
on free ports (started once per session by tests/e2e/conftest.py), and
running the CLI and other commands against it as a user would."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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


def wait_for_http(url: str, timeout_s: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers (a 401 without the token): it is up
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@contextmanager
def ray_head() -> Iterator[dict]:
    """A `ray start --head` cluster of our own. It runs with --block in a
    process group of its own and is stopped by signalling that group: `ray
    stop` would stop every Ray cluster on the machine, the test session's too."""
    temp_dir = tempfile.mkdtemp(prefix="aicmo-e2e-", dir="/tmp")  # short: Ray's socket paths have a length limit
    gcs_port, dashboard_port = free_port(), free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token", "AICMO_NAMESPACE": "e2e"}
    env.pop("RAY_ADDRESS", None)
    log = open(Path(temp_dir) / "ray-start.log", "w")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs_port}", f"--dashboard-port={dashboard_port}",
         "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=2", f"--temp-dir={temp_dir}",
         # The job agent's HTTP port is fixed (52365) by default: with the test
         # session's own cluster holding it, this head's agent could not start
         # and `ray job submit` would answer "No available agent".
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
         "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    info = {"address": f"127.0.0.1:{gcs_port}", "dashboard": f"http://127.0.0.1:{dashboard_port}", "temp_dir": temp_dir}
    env["RAY_ADDRESS"] = info["address"]
    try:
        try:
            wait_for_http(info["dashboard"] + "/api/version", timeout_s=120)
        except OSError:
            raise RuntimeError("ray start did not come up:\n" + (Path(temp_dir) / "ray-start.log").read_text()[-3000:]) from None
        yield {**info, "env": env}
    finally:
        for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(head.pid, sig)
                head.wait(wait_s)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
