"""`aicmo-gateway doctor` before anything is deployed: the config, every
`${ENV}` it reads, the cluster's address, each provider's health check from
this machine. Exit 0 all good, 1 problems found, 2 could not run."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.ops.doctor import check_config, check_providers
from actors.specs import build_spec
from tests.support.nodes import inherited_env

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def receiver() -> Iterator[Any]:
    from actors.sandbox.base import SandboxRunner
    from actors.sandbox.webhook import WebhookReceiverStandIn

    runner = SandboxRunner([WebhookReceiverStandIn()]).start()
    yield runner["webhook"]
    runner.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(path: Path, receiver: Any, health_url: str | None = None) -> Path:
    path.write_text(textwrap.dedent(f"""\
        namespace: doctor-test
        state: {{url: "{path.parent / 'state'}"}}
        capabilities:
          webhook_dispatch:
            providers:
              - name: receiver
                adapter: webhook
                settings:
                  url: "{receiver.url}"
                  secret: "${{WEBHOOK_SECRET}}"
                  health_url: "{health_url or receiver.base_url + '/health'}"
          email_sending:
            providers:
              - name: sim
                adapter: simulated
                settings: {{latency_ms: "${{SIM_LATENCY_MS:-1}}", ledger: "${{SIM_LEDGER:-}}"}}
        """))
    return path


def doctor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in inherited_env().items() if k != "WEBHOOK_SECRET"} | env
    return subprocess.run([str(BIN / "aicmo-gateway"), "doctor", *args], capture_output=True, text=True, timeout=120,
                          env=full)


def test_every_unset_variable_is_named_with_the_field_that_reads_it(tmp_path: Path, receiver: Any) -> None:
    findings, cfg = check_config(str(write(tmp_path / "g.yaml", receiver)), env={})
    assert cfg is None
    problems = [f for f in findings if f.status == "problem"]
    env = [f for f in problems if f.check == "env"]
    assert [f.subject for f in env] == ["$WEBHOOK_SECRET"]
    assert "capabilities.webhook_dispatch.providers[0].settings.secret" in env[0].detail
    assert "export WEBHOOK_SECRET=" in env[0].fix
    # The follow-on error of the empty value is not reported a second time.
    assert not [f for f in problems if f.check == "config" and "secret" in f.subject]
    defaults = [f for f in findings if f.status == "info" and f.check == "env"]
    assert "SIM_LATENCY_MS" in defaults[0].detail


def test_an_empty_variable_is_a_warning_and_a_valid_file_is_ok(tmp_path: Path, receiver: Any) -> None:
    findings, cfg = check_config(str(write(tmp_path / "g.yaml", receiver)),
                                 env={"WEBHOOK_SECRET": receiver.secret, "SIM_LEDGER": ""})
    by = {(f.check, f.subject): f for f in findings}
    assert cfg is not None and by[("config", str(tmp_path / "g.yaml"))].status == "ok"
    assert by[("env", "$WEBHOOK_SECRET")].status == "ok"
    assert by[("env", "$SIM_LEDGER")].status == "warning" and "set but empty" in by[("env", "$SIM_LEDGER")].detail
    assert not [f for f in findings if f.status == "problem"]


def test_providers_are_probed_from_here_with_a_fix_for_each_failure(tmp_path: Path, receiver: Any) -> None:
    env = {"WEBHOOK_SECRET": receiver.secret}
    _, cfg = check_config(str(write(tmp_path / "g.yaml", receiver)), env=env)
    findings = check_providers(build_spec(cfg), timeout_s=5)
    by = {f.subject: f for f in findings}
    assert by["webhook_dispatch/receiver"].status == "ok"
    assert by["email_sending/sim"].status == "info" and "no outside service" in by["email_sending/sim"].detail

    receiver.faults.update({"reject_auth": True})
    try:
        auth = {f.subject: f for f in check_providers(build_spec(cfg), timeout_s=5)}["webhook_dispatch/receiver"]
    finally:
        receiver.faults.update({"reject_auth": False})
    assert auth.status == "problem" and "auth" in auth.detail
    assert "capabilities.webhook_dispatch.providers[0].settings.secret (from environment variable WEBHOOK_SECRET)" in auth.fix
    assert receiver.secret not in auth.detail + (auth.fix or "")

    _, down = check_config(str(write(tmp_path / "d.yaml", receiver, f"http://127.0.0.1:{free_port()}/health")), env=env)
    dead = {f.subject: f for f in check_providers(build_spec(down), timeout_s=5)}["webhook_dispatch/receiver"]
    assert dead.status == "problem" and "transient" in dead.detail and "reachable from this machine" in dead.fix


def test_exit_codes(tmp_path: Path, receiver: Any) -> None:
    config = str(write(tmp_path / "g.yaml", receiver))
    good = doctor("--config", config, "--no-ray", "--json", env={"WEBHOOK_SECRET": receiver.secret})
    assert good.returncode == 0, good.stdout + good.stderr
    assert json.loads(good.stdout)["ok"] is True

    unset = doctor("--config", config, "--no-ray", env={})
    assert unset.returncode == 1 and "PROBLEM" in unset.stdout and "$WEBHOOK_SECRET" in unset.stdout
    assert "fix: export WEBHOOK_SECRET=" in unset.stdout

    no_ray = doctor("--config", config, "--address", f"127.0.0.1:{free_port()}", "--json",
                    env={"WEBHOOK_SECRET": receiver.secret})
    assert no_ray.returncode == 1
    ray_finding = next(f for f in json.loads(no_ray.stdout)["findings"] if f["check"] == "ray")
    assert ray_finding["status"] == "problem" and "nothing answers" in ray_finding["detail"]
    assert "ray start --head" in ray_finding["fix"]

    missing = doctor("--config", str(tmp_path / "nope.yaml"), "--no-ray", env={})
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_the_state_directory_check_warns_when_others_can_read_it(tmp_path: Path) -> None:
    from actors.ops.doctor import check_state_dir

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    [ok] = check_state_dir(str(private))
    assert ok.status == "ok"
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    [warning] = check_state_dir(str(shared))
    assert warning.status == "warning" and "755" in warning.detail and warning.fix == f"chmod 700 {shared}"
    [remote] = check_state_dir("postgresql://aicmo@db/aicmo")
    assert remote.status == "info"
