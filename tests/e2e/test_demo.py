"""`aicmo-gateway demo`, the main job, as a user runs it (fewer leads, same path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.nodes import inherited_env

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def test_the_demo_serves_every_request_sends_no_email_twice_and_loses_none_a_provider_dropped() -> None:
    env = inherited_env()  # what a user's shell holds: none of this session's Ray variables
    run = subprocess.run([str(BIN / "aicmo-gateway"), "demo", "--leads", "100"], capture_output=True, text=True,
                         timeout=600, env=env)
    out = run.stdout
    assert run.returncode == 0, out[-4000:] + run.stderr[-2000:]
    assert "goes down" in out and "429" in out                      # the faults were injected
    assert "every request served" in out
    assert "0 delivered more than once" in out
    # SendGrid silently dropped from three quarters in: its signed events got it ejected (degraded first when
    # a round of the router falls between), and the drop fallback re-sent each drop once through another provider.
    flat = " ".join(out.split())                                     # rich wraps lines at 110 columns
    assert "SendGrid starts silently dropping" in flat
    events = flat.split("delivery events: sendgrid answered 202")[1]
    assert "-> ejected" in events and "was not ejected" not in events
    dropped = int(events.split("silently dropped ")[1].split()[0])
    assert dropped > 0 and f"drop fallback: {dropped} dropped message(s) re-sent once" in events
    assert f"{dropped} re-sent after a drop; 0 lost" in flat
    assert "sendgrid" in out.split("what happened")[1]             # the fallback carried email
    assert "self-check" in out and "served" in out
    # A first run shows no warning that is not a problem (Ray's worker-startup one was).
    assert "worker processes have been started" not in out + run.stderr
