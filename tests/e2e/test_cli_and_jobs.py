"""As a user would: `ray start --head`, `aicmo-gateway up`, a driver submitted
with `ray job submit`, `status --json`, `self-check` exit codes, `down`.

The cluster is the e2e suite's `ray start` on private ports and a private
temp dir (tests/e2e/conftest.py), so it neither joins nor disturbs the
session's test cluster.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.cluster import BIN, cli, free_port, run

pytestmark = pytest.mark.e2e

def write_config(path: Path, ledger: Path, error: str | None = None) -> Path:
    broken = {"failure_rate": 1.0, "error": error} if error else {}
    path.write_text(textwrap.dedent(f"""\
        namespace: e2e
        supervisor: {{check_interval_s: 0}}
        state: {{url: "{ledger.parent / 'state'}"}}
        capabilities:
          email_sending:
            providers:
              - name: primary
                adapter: simulated
                settings: {{latency_ms: 2, ledger: "{ledger}", seed: 1}}
              - name: backup
                adapter: simulated
                settings: {{latency_ms: 2, ledger: "{ledger}", seed: 2}}
          crm_sync:
            providers:
              - name: airtable
                adapter: simulated
                settings: {json.dumps({"latency_ms": 2, "ledger": str(ledger), **broken})}
        """))
    return path


def test_up_job_submit_status_self_check_down(cluster: dict, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    config = write_config(tmp_path / "gateway.yaml", ledger)

    up = cli(cluster, "up", "--config", str(config))
    assert up.returncode == 0, up.stderr
    assert "ready" in up.stdout and "router:email_sending" in up.stdout
    assert_gateway_names_in_the_state_api(cluster)

    # The driver a user submits as a Ray job: the README's example, through the client.
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "send_welcome.py").write_text(textwrap.dedent("""\
        from actors.client import Gateway
        gw = Gateway.connect(namespace="e2e")
        res = gw.invoke("email_sending", "send_email", {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"},
                        idempotency_key="lead-42-welcome", deadline_s=30).raise_for_error()
        print("JOB-RESULT", res.ok, res.provider, res.value["message_id"])
        """))
    # The head's job agent can start after the dashboard answers, on a busy machine
    # well after: Ray then says "No available agent to submit job". Ask again.
    # `ray job submit` sends the token only in token mode, as the README tells its user.
    for _ in range(10):
        job = run(str(BIN / "ray"), "job", "submit", "--address", cluster["dashboard"], "--working-dir", str(job_dir),
                  "--", "python", "send_welcome.py", env={**cluster["env"], "RAY_AUTH_MODE": "token"})
        if "No available agent" not in job.stdout + job.stderr:
            break
        time.sleep(3)
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
    assert "JOB-RESULT True primary" in job.stdout
    assert [json.loads(line)["idempotency_key"] for line in ledger.read_text().splitlines()] == ["lead-42-welcome"]

    again = cli(cluster, "invoke", "email_sending", "send_email", "--json", "--idempotency-key", "lead-42-welcome",
                "--payload", '{"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}')
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["replayed"] is True
    assert len(ledger.read_text().splitlines()) == 1

    status = cli(cluster, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert {c["capability"] for c in report["capabilities"]} == {"email_sending", "crm_sync"}
    email = next(c for c in report["capabilities"] if c["capability"] == "email_sending")
    assert email["providers"][0]["name"] == "primary" and email["providers"][0]["health"] == "degraded"
    assert cli(cluster, "status").returncode == 0

    check = cli(cluster, "self-check", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["ok"] is True

    # crm_sync's only provider fails authentication: exit 1, and a fix.
    up = cli(cluster, "up", "--config", str(write_config(config, ledger, error="auth")))
    assert up.returncode == 0, up.stderr
    check = cli(cluster, "self-check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "crm_sync" in check.stdout and "credentials" in check.stdout and "fix:" in check.stdout

    up = cli(cluster, "up", "--config", str(write_config(config, ledger)))
    assert "1 replaced" in up.stdout or "replaced" in up.stdout
    assert cli(cluster, "self-check").returncode == 0

    failed = cli(cluster, "invoke", "email_sending", "send_email", "--payload", '{"to": []}')
    assert failed.returncode == 1 and "invalid_request" in failed.stdout

    down = cli(cluster, "down")
    assert down.returncode == 0 and "removed 6 actor(s)" in down.stdout
    gone = cli(cluster, "self-check")
    assert gone.returncode == 2 and "is the gateway deployed" in gone.stderr


def assert_gateway_names_in_the_state_api(cluster: dict) -> None:
    """Each gateway actor shows its gateway name (its `__repr__`) where the
    dashboard's Actors page reads it: the state API's `repr_name` (issue 23)."""
    listed = run(str(BIN / "ray"), "list", "actors", "--detail", "--format", "json", "--limit", "1000",
                 "--address", cluster["address"], env={**cluster["env"], "RAY_AUTH_MODE": "token"})
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-2000:]
    names = {a.get("name"): a.get("repr_name") for a in json.loads(listed.stdout)
             if a.get("ray_namespace") == "e2e" and a.get("state") == "ALIVE"}
    assert {n: names.get(n) for n in ("supervisor", "router:email_sending", "router:crm_sync",
                                      "provider:email_sending:primary", "provider:email_sending:backup",
                                      "provider:crm_sync:airtable")} == {
        n: n for n in ("supervisor", "router:email_sending", "router:crm_sync", "provider:email_sending:primary",
                       "provider:email_sending:backup", "provider:crm_sync:airtable")}


def test_usage_errors_exit_2_with_a_reason(cluster: dict, tmp_path: Path) -> None:
    bad_json = cli(cluster, "invoke", "email_sending", "send_email", "--payload", "{to: }")
    assert bad_json.returncode == 2 and "--payload is not valid JSON" in bad_json.stderr
    unknown = cli(cluster, "invoke", "emails", "send_email", "--payload", "{}")
    assert unknown.returncode == 2 and "unknown capability 'emails'" in unknown.stderr
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("capabilities:\n  email_sending:\n    providers:\n      - {name: a, adapter: simulated, settings: {port: 1}}\n")
    up = cli(cluster, "up", "--config", str(bad_config))
    assert up.returncode == 2 and "capabilities.email_sending.providers[0].settings.port" in up.stderr
    no_cluster = run(str(BIN / "aicmo-gateway"), "status", "--address", f"127.0.0.1:{free_port()}",
                     env={**cluster["env"], "RAY_ADDRESS": ""}, timeout=300)
    assert no_cluster.returncode == 2 and "cannot reach a Ray cluster" in no_cluster.stderr
