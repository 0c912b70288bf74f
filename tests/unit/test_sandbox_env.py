"""`up` and `doctor` find the settings of the sandbox running on this machine
(actors/cli/sandbox_env.py): only AICMO_SANDBOX_* variables, only unset ones,
only for a config that reads them, only from a live sandbox."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.cli import sandbox_env
from actors.cli.sandbox_env import RunningSandbox

SANDBOX = RunningSandbox(pid=123, env={"AICMO_SANDBOX_SMTP_CA": "/tmp/ca.pem", "AICMO_SANDBOX_SMTP_PORT": "18125",
                                       "OTHER": "x"})
CONFIG = 'ca_file: "${SMTP_CA_FILE:-${AICMO_SANDBOX_SMTP_CA:-}}"'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def a_sandbox_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line says sandbox, as `aicmo-gateway sandbox`'s does."""
    proc = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); import time; time.sleep(120)  # sandbox"],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"   # exec'd: its command line is its own
    yield proc
    proc.kill()
    proc.wait()


def test_the_unset_sandbox_variables_are_filled_in_and_nothing_else() -> None:
    environ = {"AICMO_SANDBOX_SMTP_PORT": "2525"}
    sandbox, names = sandbox_env.fill_in(CONFIG, environ, find=lambda: SANDBOX)
    assert sandbox is SANDBOX and names == ["AICMO_SANDBOX_SMTP_CA"]
    assert environ == {"AICMO_SANDBOX_SMTP_PORT": "2525", "AICMO_SANDBOX_SMTP_CA": "/tmp/ca.pem"}


def test_a_config_that_does_not_read_the_sandbox_is_left_alone() -> None:
    asked = []
    environ: dict[str, str] = {}
    assert sandbox_env.fill_in("host: smtp.example.com", environ, find=lambda: asked.append(1)) == (None, [])
    assert environ == {} and asked == []


def test_no_announcement_no_sandbox(home: Path) -> None:
    assert sandbox_env.running(wait_s=0) is None


def test_a_live_sandbox_is_found_and_withdrawn_by_its_own_process(home: Path, a_sandbox_process) -> None:
    sandbox_env.announce(a_sandbox_process.pid, {"AICMO_SANDBOX_SMTP_PORT": "18125"})
    assert sandbox_env.running(wait_s=0) == RunningSandbox(a_sandbox_process.pid, {"AICMO_SANDBOX_SMTP_PORT": "18125"})
    sandbox_env.withdraw(a_sandbox_process.pid + 1)      # not its: stays
    assert sandbox_env.running(wait_s=0) is not None
    sandbox_env.withdraw(a_sandbox_process.pid)
    assert sandbox_env.running(wait_s=0) is None


def test_a_dead_sandbox_or_a_reused_pid_is_ignored(home: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())  # sandbox"], capture_output=True, text=True)
    sandbox_env.announce(int(done.stdout), {"AICMO_SANDBOX_SMTP_PORT": "18125"})
    assert sandbox_env.running(wait_s=0) is None
    sandbox_env.announce(1, {"AICMO_SANDBOX_SMTP_PORT": "18125"})    # init: alive, but no sandbox
    assert sandbox_env.running(wait_s=0) is None


def test_a_starting_sandbox_is_waited_for_until_it_is_up(home: Path, a_sandbox_process) -> None:
    sandbox_env.announce(a_sandbox_process.pid, None)
    now = [0.0]

    def sleep(s: float) -> None:       # it comes up while `up` waits
        now[0] += s
        if now[0] >= 1.0:
            sandbox_env.announce(a_sandbox_process.pid, {"AICMO_SANDBOX_SMTP_PORT": "18125"})

    found = sandbox_env.running(wait_s=60, clock=lambda: now[0], sleep=sleep)
    assert found is not None and found.env == {"AICMO_SANDBOX_SMTP_PORT": "18125"} and now[0] >= 1.0


def test_a_sandbox_that_never_comes_up_is_given_up_on(home: Path, a_sandbox_process) -> None:
    sandbox_env.announce(a_sandbox_process.pid, None)
    now = [0.0]
    assert sandbox_env.running(wait_s=5, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)) is None
    assert now[0] >= 5
