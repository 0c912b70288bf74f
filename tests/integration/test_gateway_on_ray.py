"""The gateway on a real local Ray cluster: actors, fallback, ranking, node faults, idempotency."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from actors.errors import ErrorKind
from actors.names import SUPERVISOR_NAME, router_name

pytestmark = pytest.mark.ray

EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


def email_config(ledger: Path, primary: dict | None = None, **policy: Any) -> dict:
    sim = {"latency_ms": 2, "ledger": str(ledger)}
    return {
        "policy": policy or {},
        "capabilities": {"email_sending": {"providers": [
            {"name": "primary", "adapter": "simulated", "settings": {**sim, "seed": 1, **(primary or {})}},
            {"name": "backup", "adapter": "simulated", "settings": {**sim, "seed": 2}},
        ]}},
    }


def ledger_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_fallback_when_the_primary_fails(gateway, tmp_path: Path) -> None:
    gw = gateway(email_config(tmp_path / "l.jsonl", primary={"failure_rate": 1.0}))
    res = gw.invoke("email_sending", "send_email", EMAIL)
    assert res.ok and res.provider == "backup"
    assert [(a.provider, a.ok, a.error_kind) for a in res.attempts] == [
        ("primary", False, ErrorKind.TRANSIENT), ("backup", True, None)]
    assert [e["provider"] for e in ledger_lines(tmp_path / "l.jsonl")] == ["backup"]


def test_ranking_converges_on_the_healthy_provider(gateway, ray_cluster, tmp_path: Path) -> None:
    gw = gateway(email_config(tmp_path / "l.jsonl", primary={"failure_rate": 0.9}))
    router = gw.router("email_sending")
    warmup = ray_cluster.get([router.invoke.remote("send_email", EMAIL) for _ in range(10)])
    assert all(r.ok for r in warmup)
    results = [ray_cluster.get(router.invoke.remote("send_email", EMAIL)) for _ in range(40)]
    assert all(r.ok for r in results)
    mean_attempts = sum(len(r.attempts) for r in results) / len(results)
    assert mean_attempts <= 1.1, mean_attempts
    status = ray_cluster.get(router.status.remote())
    assert status.providers[0].name == "backup"


def test_killed_provider_actor_loses_no_request(gateway, ray_cluster, tmp_path: Path) -> None:
    ledger = tmp_path / "l.jsonl"
    gw = gateway(email_config(ledger, primary={"latency_ms": 20}))
    router = gw.router("email_sending")
    primary = gw.provider("email_sending", "primary")
    killer = threading.Timer(0.3, lambda: ray_cluster.kill(primary, no_restart=False))
    killer.start()
    refs = []
    for i in range(60):
        refs.append(router.invoke.remote("send_email", EMAIL, idempotency_key=f"k{i}"))
        time.sleep(0.01)
    results = ray_cluster.get(refs, timeout=120)
    killer.join()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    crashed = [a for r in results for a in r.attempts if a.error_kind in (ErrorKind.CRASHED, ErrorKind.UNAVAILABLE)]
    assert crashed, "the kill should have hit requests in flight"
    delivered = [e["idempotency_key"] for e in ledger_lines(ledger)]
    # Every request delivered exactly once: a send cut off by the kill was
    # settled through the restarted provider's journal, never re-sent blindly.
    assert sorted(delivered) == sorted(f"k{i}" for i in range(60))
    # Ray restarts the actor under the same name and the router uses it again.
    assert ray_cluster.get(primary.ready.remote(), timeout=60) == "provider:email_sending:primary"


def test_bad_payload_and_unknown_method_call_no_provider(gateway, tmp_path: Path) -> None:
    ledger = tmp_path / "l.jsonl"
    gw = gateway(email_config(ledger))
    bad = gw.invoke("email_sending", "send_email", {"to": "ann@example.com", "subject": "x", "text": "y"})
    assert bad.error.kind is ErrorKind.INVALID_REQUEST and bad.attempts == [] and "$.to" in bad.error.message
    unknown = gw.invoke("email_sending", "send_sms", EMAIL)
    assert unknown.error.kind is ErrorKind.UNKNOWN_METHOD and unknown.attempts == []
    assert not ledger.exists()


def test_dry_run_writes_no_ledger_line(gateway, tmp_path: Path) -> None:
    ledger = tmp_path / "l.jsonl"
    gw = gateway(email_config(ledger))
    res = gw.invoke("email_sending", "send_email", EMAIL, dry_run=True)
    assert res.ok and res.dry_run and res.value["delivered"] is False
    assert not ledger.exists()
    res = gw.invoke("email_sending", "send_email", EMAIL)
    assert res.ok and len(ledger_lines(ledger)) == 1


def test_config_dry_run_is_the_default_for_invoke(gateway, tmp_path: Path) -> None:
    ledger = tmp_path / "l.jsonl"
    gw = gateway({**email_config(ledger), "dry_run": True})
    assert gw.invoke("email_sending", "send_email", EMAIL).dry_run
    assert not ledger.exists()
    assert not gw.invoke("email_sending", "send_email", EMAIL, dry_run=False).dry_run
    assert len(ledger_lines(ledger)) == 1


def test_repeated_idempotency_key_delivers_once(gateway, ray_cluster, tmp_path: Path) -> None:
    ledger = tmp_path / "l.jsonl"
    gw = gateway(email_config(ledger))
    router = gw.router("email_sending")
    results = ray_cluster.get([router.invoke.remote("send_email", EMAIL, idempotency_key="lead-42-welcome")
                               for _ in range(10)])
    assert all(r.ok for r in results) and sum(not r.replayed for r in results) == 1
    assert len({r.value["message_id"] for r in results}) == 1
    assert [e["idempotency_key"] for e in ledger_lines(ledger)] == ["lead-42-welcome"]


def test_invoke_many_returns_results_in_order(gateway, ray_cluster, tmp_path: Path) -> None:
    gw = gateway(email_config(tmp_path / "l.jsonl"))
    requests = [("send_email", {**EMAIL, "subject": f"s{i}"}, {"idempotency_key": f"b{i}"}) for i in range(30)]
    requests[7] = ("send_email", {"to": []}, {})
    results = ray_cluster.get(gw.router("email_sending").invoke_many.remote(requests))
    assert [r.idempotency_key for r in results if r.ok] == [f"b{i}" for i in range(30) if i != 7]
    assert results[7].error.kind is ErrorKind.INVALID_REQUEST


def test_supervisor_reports_status_and_self_check(gateway, ray_cluster, tmp_path: Path) -> None:
    gw = gateway(email_config(tmp_path / "l.jsonl", primary={"failure_rate": 1.0, "error": "auth"}))
    for _ in range(3):
        gw.invoke("email_sending", "send_email", EMAIL)
    report = ray_cluster.get(gw.supervisor.status_report.remote())
    cap = report.capabilities[0]
    assert [p.name for p in cap.providers] == ["backup", "primary"]
    assert cap.providers[1].last_error_kind is ErrorKind.AUTH and len(cap.recent_operations) == 3
    check = ray_cluster.get(gw.supervisor.run_full_check.remote())
    assert check.ok  # the backup serves
    auth = [r for r in check.recommendations if r.provider == "primary"]
    assert auth and auth[0].severity == "critical" and "credentials" in auth[0].problem
    # providers push their changes of health to the supervisor
    pushed = ray_cluster.get(gw.supervisor.pushed_reports.remote())
    assert any(s.name == "primary" for s in pushed)


def test_redeploy_keeps_unchanged_actors_and_replaces_changed_ones(ray_cluster, tmp_path: Path) -> None:
    from actors.config import parse_config
    from actors.deploy.gateway import deploy, teardown
    from actors.specs import build_spec

    config = {**email_config(tmp_path / "l.jsonl"), "namespace": "t-redeploy", "supervisor": {"check_interval_s": 0},
              "state": {"url": str(tmp_path / "state")}}
    try:
        first = deploy(build_spec(parse_config(config, env={})), detached=False)
        assert len(first.created) == 4
        again = deploy(build_spec(parse_config(config, env={})), detached=False)
        assert again.created == [] and again.replaced == [] and len(again.unchanged) == 4
        config["capabilities"]["email_sending"]["providers"][1]["settings"]["latency_ms"] = 3
        changed = deploy(build_spec(parse_config(config, env={})), detached=False)
        assert set(changed.replaced) == {"provider:email_sending:backup", "router:email_sending", "supervisor"}
        router = ray_cluster.get_actor(router_name("email_sending"), namespace="t-redeploy")
        assert ray_cluster.get(router.invoke.remote("send_email", EMAIL)).ok
    finally:
        assert len(teardown("t-redeploy")) == 4


def test_a_supervisor_replaced_by_a_redeploy_still_hears_the_providers_it_kept(ray_cluster, tmp_path: Path) -> None:
    """Providers keep their peers' handles (a lookup is a blocking GCS call):
    a report to a supervisor that a redeploy replaced is sent again to the new one."""
    from actors.config import parse_config
    from actors.policy.health import Health
    from actors.deploy.gateway import deploy, teardown
    from actors.specs import build_spec

    # No sampling: the new supervisor learns of the provider only by its push.
    supervisor = {"check_interval_s": 0, "drain_interval_s": 0, "sample_interval_s": 0}
    policy = {"routing": {"ranking": "actors.policy.ranking:configured_order"}, "health": {"unhealthy_after": 2}}
    config = {**email_config(tmp_path / "l.jsonl", primary={"failure_rate": 1.0, "error": "auth"}, **policy),
              "namespace": "t-repush", "supervisor": supervisor, "state": {"url": str(tmp_path / "state")}}
    try:
        deploy(build_spec(parse_config(config, env={})), detached=False)
        router = ray_cluster.get_actor(router_name("email_sending"), namespace="t-repush")
        # primary fails once: degraded, pushed to the first supervisor, whose handle it keeps
        assert ray_cluster.get(router.invoke.remote("send_email", EMAIL)).ok
        config["supervisor"] = {**supervisor, "check_jitter_s": 1.0}
        changed = deploy(build_spec(parse_config(config, env={})), detached=False)
        assert changed.replaced == ["supervisor"]
        # and twice: unhealthy, pushed to the handle of a supervisor that is gone, then to the new one
        assert ray_cluster.get(router.invoke.remote("send_email", EMAIL)).ok
        new_supervisor = ray_cluster.get_actor(SUPERVISOR_NAME, namespace="t-repush")

        def heard() -> dict[str, Health]:
            return {s.name: s.health for s in ray_cluster.get(new_supervisor.pushed_reports.remote())}

        deadline = time.monotonic() + 30
        while "primary" not in heard() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert heard().get("primary") is Health.UNHEALTHY
    finally:
        teardown("t-repush")


def test_direct_reads_go_to_the_ranked_provider_and_fall_back_through_the_router(gateway, ray_cluster,
                                                                                    tmp_path: Path) -> None:
    from actors.client import Gateway as Client

    ledger = tmp_path / "l.jsonl"
    gw = gateway({"capabilities": {"email_verification": {"providers": [
        {"name": "primary", "adapter": "simulated", "settings": {"latency_ms": 1, "ledger": str(ledger), "seed": 1}},
        {"name": "backup", "adapter": "simulated", "settings": {"latency_ms": 1, "ledger": str(ledger), "seed": 2}}]}}})
    client = Client(gw.namespace, direct_reads=True)
    verify = {"email": "ann@example.com"}
    results = [client.invoke("email_verification", "verify_email", verify) for _ in range(10)]
    assert all(r.ok and r.provider == "primary" for r in results)
    assert ray_cluster.get(gw.router("email_verification").recent_operations.remote()) == []  # the router served none
    assert len(ledger_lines(ledger)) == 10

    ray_cluster.get(gw.provider("email_verification", "primary").inject_fault.remote(failure_rate=1.0))
    res = client.invoke("email_verification", "verify_email", verify, deadline_s=10)
    assert res.ok and res.provider == "backup", res
    assert res.attempts[0].provider == "primary" and res.attempts[0].error_kind is ErrorKind.TRANSIENT
    assert ray_cluster.get(gw.router("email_verification").recent_operations.remote())   # this one it served
    from actors.payloads import VerifyEmail

    typed = Client(gw.namespace).call(VerifyEmail(email="bob@example.com"), deadline_s=10)  # a Struct, through Ray
    assert typed.ok and typed.value["email"] == "bob@example.com"
