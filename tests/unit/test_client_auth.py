"""The client turns Ray's token mode on when a token is at hand and the user
has not chosen, before Ray reads it (at `import ray`), or refreshes Ray's
config when the driver imported ray first; a choice in RAY_AUTH_MODE stands.

Each case runs in a fresh interpreter (Ray reads its config once per
process), with a HOME of its own: no cluster is needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

MODE = "from ray._raylet import get_authentication_mode, AuthenticationMode as M; " \
       "print('MODE', {M.TOKEN: 'token', M.DISABLED: 'disabled'}[get_authentication_mode()], os.environ.get('RAY_AUTH_MODE'))"


def mode_after(code: str, home: Path, token: bool, **env: str) -> str:
    if token:
        (home / ".ray").mkdir(parents=True, exist_ok=True)
        (home / ".ray" / "auth_token").write_text("0" * 32)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run([sys.executable, "-c", f"import os\n{code}\n{MODE}"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**clean, "HOME": str(home), "PYTHONPATH": str(ROOT), **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split("MODE ", 1)[1].strip()


@pytest.mark.parametrize("code", [
    "import actors.client",                                   # a driver: the client first
    "import actors.cli.main",                                 # the console script
    "import ray\nfrom actors.client.cluster import use_token_auth_if_available as f\nf()",   # ray imported first (join does this)
])
def test_a_token_at_hand_turns_token_mode_on(code: str, tmp_path: Path) -> None:
    assert mode_after(code, tmp_path, token=True) == "token token"


def test_a_token_named_by_ray_auth_token_path_counts(tmp_path: Path) -> None:
    token = tmp_path / "elsewhere"
    token.write_text("0" * 32)
    assert mode_after("import actors.client", tmp_path, token=False, RAY_AUTH_TOKEN_PATH=str(token)) == "token token"


def test_without_a_token_nothing_changes(tmp_path: Path) -> None:
    assert mode_after("import actors.client", tmp_path, token=False) == "disabled None"


@pytest.mark.parametrize("code", ["import actors.client", "import ray\nimport actors.client.cluster as c\nc.use_token_auth_if_available()"])
def test_the_users_choice_stands(code: str, tmp_path: Path) -> None:
    assert mode_after(code, tmp_path, token=True, RAY_AUTH_MODE="disabled") == "disabled disabled"
