"""`aicmo-gateway chaos inject|list|clear` against a gateway deployed with
`aicmo-gateway up` on the e2e suite's shared `ray start` cluster: exit
codes, what status and the audit log show, bad input and a config that
forbids it (exit 2, saying so)."""

from __future__ import annotations

import json
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.cluster import cli

pytestmark = pytest.mark.e2e

NS = "e2e-chaos"
EMAIL = '{"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}'


def metric(port: int, name: str, **match: str) -> float:
    """The sum of a metric's series whose labels include `match`, on Ray's
    Prometheus endpoint of the head."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in match.items()))


def write_config(path: Path, allowed: bool) -> Path:
    ledger = path.parent / "ledger.jsonl"
    path.write_text(textwrap.dedent(f"""\
        namespace: {NS}
        supervisor: {{check_interval_s: 0}}
        state: {{url: "{path.parent / 'state'}"}}
        chaos: {{allowed: {str(allowed).lower()}}}
        capabilities:
          email_sending:
            providers:
              - name: primary
                adapter: simulated
                settings: {{latency_ms: 2, ledger: "{ledger}", seed: 1}}
              - name: backup
                adapter: simulated
                settings: {{latency_ms: 2, ledger: "{ledger}", seed: 2}}
        """))
    return path


def test_chaos_inject_list_status_clear_and_forbidden(cluster: dict, tmp_path: Path) -> None:
    env = {"AICMO_NAMESPACE": NS}

    def run(*args: str):
        return cli(cluster, *args, env=env)

    up = run("up", "--config", str(write_config(tmp_path / "gateway.yaml", allowed=True)))
    assert up.returncode == 0, up.stderr
    try:
        inject = run("chaos", "inject", "email_sending", "primary", "--fail", "1", "--error", "transient", "--for", "60")
        assert inject.returncode == 0, inject.stderr
        assert "on email_sending/primary: 100% transient until" in inject.stdout and "@" in inject.stdout

        listed = run("chaos", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [fault] = json.loads(listed.stdout)
        assert (fault["capability"], fault["provider"], fault["fail_rate"], fault["error"]) == (
            "email_sending", "primary", 1.0, "transient")

        invoked = run("invoke", "email_sending", "send_email", "--payload", EMAIL, "--json")
        assert invoked.returncode == 0, invoked.stderr
        result = json.loads(invoked.stdout)
        assert result["ok"] and result["provider"] == "backup" and result["attempts"][0]["injected"] is True

        status = run("status")
        assert status.returncode == 0 and "chaos: 1 active fault (email_sending/primary: 100% transient" in status.stdout
        shown = json.loads(run("status", "--json").stdout)
        by_name = {p["name"]: p for c in shown["capabilities"] for p in c["providers"]}
        assert by_name["primary"]["fault"]["id"] == fault["id"] and by_name["backup"]["fault"] is None
        assert set(by_name["primary"]["fault"]) == {"id", "fail_rate", "error", "latency_ms", "expires_at", "injected_by"}

        # The metrics, as Ray's Prometheus endpoint on the head shows them (workers report about every 10 s).
        labels = {"capability": "email_sending", "provider": "primary"}
        deadline = time.monotonic() + 90
        while True:
            applied = metric(cluster["metrics_port"], "ray_aicmo_chaos_applied_total", action="fail", **labels)
            active = metric(cluster["metrics_port"], "ray_aicmo_chaos_fault_active", **labels)
            if (applied >= 1 and active == 1) or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert applied >= 1 and active == 1, (applied, active)

        audit = run("audit", "tail", "-n", "20")
        assert audit.returncode == 0 and f"chaos injected fault {fault['id']}" in audit.stdout

        for args, says in [
            (("--fail", "2", "--for", "10"), "the failure rate must be within 0..1, not 2.0"),
            (("--error", "bogus", "--for", "10"), "'bogus' is not an error kind"),
            (("--fail", "0.5",), "--for SECONDS is required"),
            (("--fail", "0.5", "--for", "99999"), "--for must be more than 0 and at most 3600 s"),
        ]:
            bad = run("chaos", "inject", "email_sending", "primary", *args)
            assert bad.returncode == 2 and says in bad.stderr, (args, bad.stderr)
        unknown = run("chaos", "inject", "email_sending", "nope", "--fail", "1", "--for", "10")
        assert unknown.returncode == 2 and "no provider 'nope' under capability 'email_sending'" in unknown.stderr

        cleared = run("chaos", "clear", "email_sending", "primary")
        assert cleared.returncode == 0 and f"cleared fault {fault['id']} on email_sending/primary" in cleared.stdout
        assert run("chaos", "list").stdout.strip() == "no active fault"

        up = run("up", "--config", str(write_config(tmp_path / "gateway.yaml", allowed=False)))
        assert up.returncode == 0, up.stderr
        forbidden = run("chaos", "inject", "email_sending", "primary", "--fail", "1", "--for", "10")
        assert forbidden.returncode == 2
        assert "fault injection is forbidden by this gateway's config (chaos.allowed: false)" in forbidden.stderr
        assert run("chaos", "clear").returncode == 0  # nothing to clear is not an error
    finally:
        run("down")
