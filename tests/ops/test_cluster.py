"""A two-node local Ray cluster (`ray.cluster_utils.Cluster`, hosted by
tests/ops/cluster_host.py in a process of its own) where node B cannot reach
the webhook receiver: its Ray processes run behind an egress proxy that is
down. The head reaches it directly.

Checks: the reachability matrix shows it and a recommendation names node B;
the metrics scraped from the head's export port carry every gateway metric
with sane labels; `status`, `self-check` and `audit tail` as a user runs them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.ops.metrics import DEFINITIONS, exported_name

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("ops-cluster")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "HTTP_PROXY", "HTTPS_PROXY")}
    log = open(workdir / "host.log", "w")
    host = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cluster_host.py")), str(workdir)],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    ready = workdir / "ready.json"
    try:
        deadline = time.monotonic() + 400
        while not ready.exists():
            if host.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the cluster host did not come up:\n" + (workdir / "host.log").read_text()[-4000:])
            time.sleep(1)
        info = json.loads(ready.read_text())
        info["env"] = {**env, "RAY_ADDRESS": info["address"], "AICMO_NAMESPACE": info["namespace"], "COLUMNS": "200"}
        yield info
    finally:
        try:
            host.stdin.close()  # type: ignore[union-attr]
            host.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(host.pid, sig)
                host.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        log.close()


def cli(cluster: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "aicmo-gateway"), *args], capture_output=True, text=True, timeout=timeout,
                          env=cluster["env"], cwd=ROOT)


@pytest.fixture(scope="module")
def check(cluster: dict) -> dict:
    """`self-check --json`, run once for the module."""
    done = cli(cluster, "self-check", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {**json.loads(done.stdout), "checked_at": time.monotonic()}


def test_the_traffic_went_as_configured(cluster: dict) -> None:
    assert all(cluster["email_ok"]) and set(cluster["email_providers"]) == {"backup"}
    assert all(cluster["webhook_ok"]) and cluster["invalid_kind"] == "invalid_request"


def test_the_reachability_matrix_shows_the_blocked_node_and_a_recommendation_names_it(cluster: dict, check: dict) -> None:
    reach = check["reachability"]
    by_node = {n["node"]["node_id"]: n for n in reach["nodes"]}
    assert set(by_node) == {cluster["head_node_id"], cluster["blocked_node_id"]}
    head, blocked = by_node[cluster["head_node_id"]], by_node[cluster["blocked_node_id"]]
    assert head["error"] is None and blocked["error"] is None
    # Only the webhook receiver is probed from the nodes: simulated and outbox providers reach nothing.
    assert [(r["provider"], r["ok"]) for r in head["results"]] == [("receiver", True)]
    assert [(r["provider"], r["ok"], r["error_kind"]) for r in blocked["results"]] == [("receiver", False, "transient")]
    assert reach["actor_nodes"]["webhook_dispatch/receiver"] == cluster["head_node_id"]
    # The provider itself is fine: its actor (on the head) passes its probe, and the capability is served.
    webhook = next(c for c in check["capabilities"] if c["capability"] == "webhook_dispatch")
    assert webhook["served"] and webhook["usable_providers"] == ["receiver"]
    recs = [r for r in check["recommendations"] if r["problem"].startswith("node ")]
    assert len(recs) == 1
    rec = recs[0]
    assert cluster["blocked_node_id"][:8] in rec["problem"] and "cannot reach receiver" in rec["problem"]
    assert rec["severity"] == "warning" and rec["provider"] == "receiver"
    assert cluster["head_node_id"][:8] in rec["evidence"]
    assert "HTTPS_PROXY" in rec["fix"] and "capabilities.webhook_dispatch.providers[0].settings" in rec["fix"]
    assert check["ok"] is True


def test_self_check_prints_the_matrix_and_the_fix(cluster: dict, check: dict) -> None:
    done = cli(cluster, "self-check")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "reachability" in out and "webhook_dispatch/receiver" in out
    assert re.search(rf"WARNING\s+webhook_dispatch/receiver: node \S+ \({cluster['blocked_node_id'][:8]}\) cannot reach", out)
    assert "fix: check the network path from node" in out


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def _series(text: str, name: str) -> list[dict[str, str]]:
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line[len(name):line.rindex("}") + 1]))
            out.append(labels)
    return out


def _value(text: str, name: str, **match: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in match.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# What the traffic in cluster_host.py must show, as (metric, labels, value).
EXPECTED_VALUES: list[tuple[str, dict[str, str], float]] = [
    ("ray_aicmo_requests_total", {"capability": "email_sending", "provider": "backup", "outcome": "ok"}, 12),
    ("ray_aicmo_requests_total", {"capability": "email_sending", "provider": "none", "outcome": "invalid_request"}, 1),
    ("ray_aicmo_requests_total", {"capability": "webhook_dispatch", "provider": "receiver", "outcome": "ok"}, 4),
    ("ray_aicmo_fallbacks_total", {"from_provider": "primary", "to_provider": "backup"}, 12),
    ("ray_aicmo_attempts_total", {"provider": "primary", "outcome": "transient", "role": "first"}, 12),
    ("ray_aicmo_provider_latency_ms_count", {"provider": "backup", "outcome": "ok"}, 12),
    ("ray_aicmo_capability_served", {"capability": "webhook_dispatch"}, 1),
    ("ray_aicmo_provider_health", {"provider": "backup"}, 4),  # healthy: more than 5 successes in a row
    ("ray_aicmo_provider_health", {"provider": "primary"}, 3),  # degraded: failing, but unhealthy_after is 1000
    ("ray_aicmo_reachable", {"provider": "receiver"}, 1),  # the head's 1 plus node B's 0
    ("ray_aicmo_outbox_depth", {"capability": "email_sending", "state": "pending"}, 0),
    ("ray_aicmo_hook_calls_total", {"event": "on_success", "outcome": "ok"}, 16),
]


def test_metrics_on_the_head_carry_every_metric_with_sane_labels(cluster: dict, check: dict) -> None:
    wanted = {exported_name(n): d for n, d in DEFINITIONS.items()}
    suffix = {"histogram": "_bucket"}

    def unmet(text: str) -> list[str]:
        missing = [f"{n}: not exported" for n, d in wanted.items() if not _series(text, n + suffix.get(d.kind, ""))]
        wrong = [f"{n}{labels}: {got} != {want}" for n, labels, want in EXPECTED_VALUES
                 if (got := _value(text, n, **labels)) != want]
        return missing + wrong

    # Each worker hands its metrics to the node's agent on its own schedule (about
    # every 10 s), so one router's series can show up a round after another's:
    # wait for every expected value, not only for every name.
    deadline = time.monotonic() + 120
    while True:
        text = _scrape(cluster["metrics_port"])
        problems = unmet(text)
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert not problems, "after 120 s:\n" + "\n".join(problems)

    caps = {"email_sending", "webhook_dispatch"}
    providers = {"primary", "backup", "outbox", "receiver"}
    kinds = {"ok", "transient", "invalid_request", "all_providers_failed", "timeout", "rate_limited"}
    for name, d in wanted.items():
        for labels in _series(text, name + suffix.get(d.kind, "")):
            assert set(d.tag_keys) <= set(labels), (name, labels)
            if "capability" in d.tag_keys:
                assert labels["capability"] in caps, (name, labels)
            for key in ("provider", "from_provider", "to_provider"):
                if key in d.tag_keys:
                    assert labels[key] in providers | {"none"}, (name, labels)
            if "outcome" in d.tag_keys and name != "ray_aicmo_hook_calls_total":
                assert labels["outcome"] in kinds, (name, labels)

    blocked = cluster["blocked_node_id"][:8]
    reach = {labels["node"]: labels for labels in _series(text, "ray_aicmo_reachable")}
    assert any(node.endswith(blocked) for node in reach)


def test_status_is_a_readable_table(cluster: dict) -> None:
    done = cli(cluster, "status")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "email_sending" in out and "webhook_dispatch" in out
    for column in ("provider", "health", "ok/calls", "ewma ms", "note"):
        assert column in out
    # Calls include the self-checks' probes.
    assert re.search(r"backup\s+│ simulated\s+│ healthy\s+│\s+(\d+)/\1 ", out), out
    assert re.search(r"primary\s+│ simulated\s+│ degraded\s+│\s+0/\d+ ", out), out
    assert "last error" in out and "(transient)" in out  # the note may wrap in a narrow table
    assert "error" in out and "invalid_request" in out  # the latest failed request, under the table


def test_status_watch_refreshes_until_interrupted(cluster: dict) -> None:
    watch = subprocess.Popen([str(BIN / "aicmo-gateway"), "status", "--watch", "1"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=cluster["env"], cwd=ROOT)
    deadline = time.monotonic() + 120
    seen = b""
    os.set_blocking(watch.stdout.fileno(), False)  # type: ignore[union-attr]
    while seen.count(b"aicmo-gateway status") < 2 and time.monotonic() < deadline and watch.poll() is None:
        time.sleep(0.5)
        seen += watch.stdout.read() or b""  # type: ignore[union-attr]
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=30)
    seen += out or b""
    assert watch.returncode == 0, err[-2000:]
    seen = seen.decode()
    assert seen.count("aicmo-gateway status") >= 2 and seen.count("webhook_dispatch") >= 2


def test_audit_tail_shows_decisions_without_addresses(cluster: dict) -> None:
    done = cli(cluster, "audit", "tail", "--capability", "email_sending", "-n", "5", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 5 and records[-1]["outcome"] == "invalid_request"
    assert all("@" not in line for line in done.stdout.splitlines())
    fell_back = records[0]
    assert fell_back["candidates"] == ["primary", "backup", "outbox"] and fell_back["key"].startswith("sha256:")
    assert [(a["provider"], a["ok"]) for a in fell_back["attempts"]] == [("primary", False), ("backup", True)]
    text = cli(cluster, "audit", "tail", "-n", "3")
    assert text.returncode == 0, text.stderr[-3000:]
    lines = text.stdout.splitlines()
    assert len(lines) == 3 and any("webhook_dispatch.dispatch ok via receiver" in line for line in lines)


def test_doctor_reaches_the_cluster_and_probes_from_here(cluster: dict, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "namespace": cluster["namespace"],
        "capabilities": {"webhook_dispatch": {"providers": [{"name": "receiver", "adapter": "webhook", "settings": {
            "url": cluster["webhook_url"] + "/webhook", "secret": "${WEBHOOK_SECRET}",
            "health_url": cluster["webhook_url"] + "/health"}}]}}}))
    env = {**cluster["env"], "WEBHOOK_SECRET": cluster["webhook_secret"]}
    done = subprocess.run([str(BIN / "aicmo-gateway"), "doctor", "--config", str(config), "--json"], capture_output=True,
                          text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    findings = {(f["check"], f["subject"]): f for f in json.loads(done.stdout)["findings"]}
    ray_ok = findings[("ray", cluster["address"])]
    assert ray_ok["status"] == "ok" and "2 alive node(s)" in ray_ok["detail"]
    gateway = findings[("gateway", cluster["namespace"])]
    assert gateway["detail"].startswith("deployed")  # from another config: `up` would update it
    assert findings[("provider", "webhook_dispatch/receiver")]["status"] == "ok"
    assert findings[("env", "$WEBHOOK_SECRET")]["status"] == "ok"


def test_audit_tail_follow_prints_new_decisions(cluster: dict) -> None:
    follow = subprocess.Popen([str(BIN / "aicmo-gateway"), "audit", "tail", "--capability", "webhook_dispatch", "-n", "0",
                               "--follow", "--json", "--interval", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=cluster["env"], cwd=ROOT)
    try:
        time.sleep(8)  # connected and polling (a record sent before its first poll would show too: no race to lose)
        sent = cli(cluster, "invoke", "webhook_dispatch", "dispatch", "--json", "--idempotency-key", "follow-1",
                   "--payload", '{"event": "lead.followed", "data": {"lead": 1}}')
        assert sent.returncode == 0, sent.stderr[-2000:]
        request_id = json.loads(sent.stdout)["request_id"]
        os.set_blocking(follow.stdout.fileno(), False)  # type: ignore[union-attr]
        seen = b""
        deadline = time.monotonic() + 60
        while request_id.encode() not in seen and time.monotonic() < deadline and follow.poll() is None:
            time.sleep(0.5)
            seen += follow.stdout.read() or b""  # type: ignore[union-attr]
    finally:
        follow.send_signal(signal.SIGINT)
        out, err = follow.communicate(timeout=30)
    seen += out or b""
    assert follow.returncode == 0, err[-2000:]
    records = [json.loads(line) for line in seen.decode().splitlines() if line.strip()]
    assert [r["request_id"] for r in records] == [request_id]
    assert records[0]["provider"] == "receiver" and records[0]["key"].startswith("sha256:")


def test_the_self_checks_gauges_stay_exported_between_checks(cluster: dict, check: dict) -> None:
    # Ray's agent drops a gauge series not reported for two export intervals
    # (about 20 s); periodic checks are off here, so only the supervisor's
    # refreshing keeps these alive this long after the one check.
    time.sleep(max(0.0, check["checked_at"] + 35 - time.monotonic()))
    text = _scrape(cluster["metrics_port"])
    assert _value(text, "ray_aicmo_capability_served", capability="webhook_dispatch") == 1
    assert len(_series(text, "ray_aicmo_reachable")) == 2  # the receiver, from each of the two nodes
