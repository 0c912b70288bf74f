"""`aicmo-gateway demo`, the main job, as a user runs it (fewer leads, same path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def test_the_demo_serves_every_request_and_sends_no_email_twice() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([str(BIN / "aicmo-gateway"), "demo", "--leads", "100"], capture_output=True, text=True,
                         timeout=600, env=env)
    out = run.stdout
    assert run.returncode == 0, out[-4000:] + run.stderr[-2000:]
    assert "goes down" in out and "429" in out                      # the faults were injected
    assert "every request served" in out
    assert "0 delivered more than once" in out
    assert "sendgrid" in out.split("what happened")[1]             # the fallback carried email
    assert "self-check" in out and "served" in out
    # A first run shows no warning that is not a problem (Ray's worker-startup one was).
    assert "worker processes have been started" not in out + run.stderr
