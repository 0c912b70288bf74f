"""Operations on the session's local Ray: hooks in real router and provider
actors, the audit log read back through the router, a passing probe letting
a cooled-down provider back in, and the supervisor's reports of hooks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from actors.ops.privacy import hash_key

pytestmark = pytest.mark.ray

ADDRESS = "ann.lee@example.com"
EMAIL = {"to": [ADDRESS], "subject": "Hi", "text": "Hello"}
H = "tests.ops.sample_hooks"


def sim(**settings: Any) -> dict:
    return {"latency_ms": 1, **settings}


@pytest.fixture
def collector(ray_cluster: Any) -> Any:
    """The actor the `to_collector` hook reports to, created per test."""
    import uuid

    from tests.ops.sample_hooks import COLLECTOR, COLLECTOR_NAMESPACE

    @ray_cluster.remote(num_cpus=0)
    class Collector:
        def __init__(self) -> None:
            self.items: list[tuple[str, Any]] = []

        def add(self, kind: str, item: Any) -> None:
            self.items.append((kind, item))

        def get(self) -> list[tuple[str, Any]]:
            return list(self.items)

    namespace = f"t-{uuid.uuid4().hex[:10]}"
    handle = Collector.options(name=COLLECTOR, namespace=COLLECTOR_NAMESPACE).remote()
    yield namespace, handle
    ray_cluster.kill(handle)


def wait_for(fn: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_hooks_run_in_the_actors_and_a_raising_hook_changes_nothing(gateway, ray_cluster, collector) -> None:
    namespace, handle = collector
    gw = gateway({
        "hooks": {"on_success": [f"{H}:explode", f"{H}:to_collector"], "on_failure": f"{H}:to_collector",
                  "on_health_change": [f"{H}:to_collector", f"{H}:explode"]},
        "policy": {"health": {"unhealthy_after": 1}},
        "capabilities": {"email_sending": {"providers": [
            {"name": "primary", "adapter": "simulated", "settings": sim()}]}},
    }, namespace=namespace)
    ok = gw.invoke("email_sending", "send_email", EMAIL, idempotency_key="k-ok")
    gw.ray.get(gw.provider("email_sending", "primary").inject_fault.remote(failure_rate=1.0))
    failed = gw.invoke("email_sending", "send_email", EMAIL, idempotency_key="k-failed")
    assert ok.ok and not failed.ok and failed.error.kind == "all_providers_failed"

    def collected() -> list:
        got = ray_cluster.get(handle.get.remote())
        return got if len(got) >= 4 else []

    items = wait_for(collected)
    assert items, (ray_cluster.get(handle.get.remote()), ray_cluster.get(gw.router("email_sending").ops_report.remote()))
    decisions = {d["idempotency_key"]: d for kind, d in items if kind == "Decision"}
    assert decisions["k-ok"]["ok"] and decisions["k-ok"]["request_id"] == ok.request_id
    assert decisions["k-ok"]["provider"] == "primary" and decisions["k-ok"]["candidates"] == ["primary"]
    assert not decisions["k-failed"]["ok"] and decisions["k-failed"]["error_kind"] == "all_providers_failed"
    assert decisions["k-failed"]["attempts"][0]["error_kind"] == "transient"
    changes = [(c["old"], c["new"]) for kind, c in items if kind == "HealthChange"]
    assert changes == [("unknown", "degraded"), ("degraded", "unhealthy")]

    # The supervisor reports the hook that raises, from the router and from the provider.
    check = ray_cluster.get(gw.supervisor.run_full_check.remote(), timeout=120)
    hook_recs = [r for r in check.recommendations if r.problem.startswith(f"hook {H}:explode fails")]
    assert {r.problem.rsplit(" in ", 1)[1] for r in hook_recs} == {
        "router:email_sending", "provider:email_sending:primary"}
    assert all("RuntimeError" in r.evidence for r in hook_recs)


def test_the_audit_log_is_read_back_through_the_router(gateway, ray_cluster, tmp_path: Path) -> None:
    gw = gateway({"capabilities": {"email_sending": {"providers": [
        {"name": "primary", "adapter": "simulated", "settings": sim(failure_rate=1.0)},
        {"name": "backup", "adapter": "simulated", "settings": sim()}]}}})
    router = gw.router("email_sending")
    results = [gw.invoke("email_sending", "send_email", EMAIL, idempotency_key=f"lead-{i}-{ADDRESS}") for i in range(3)]
    tail = ray_cluster.get(router.audit_tail.remote(2), timeout=60)
    assert [r["request_id"] for r in tail["records"]] == [res.request_id for res in results[1:]]
    hashed = ray_cluster.get(gw.supervisor.audit_hashes.remote(f"lead-2-{ADDRESS}", ADDRESS), timeout=60)
    assert tail["records"][-1]["key"] == hashed["key"] and hashed["key"].startswith("hmac:")
    assert hashed["key"] != hash_key(f"lead-2-{ADDRESS}")  # not the unkeyed hash a dictionary could reverse
    text = Path(tail["path"]).read_text()
    assert ADDRESS not in text and len(text.splitlines()) == 3
    first = ray_cluster.get(router.audit_tail.remote(3), timeout=60)["records"][0]
    assert [(a["provider"], a["ok"]) for a in first["attempts"]] == [("primary", False), ("backup", True)]

    more = gw.invoke("email_sending", "send_email", EMAIL)
    since = ray_cluster.get(router.audit_since.remote(tail["cursor"]), timeout=60)
    assert [r["request_id"] for r in since["records"]] == [more.request_id]


def test_a_passing_probe_lets_a_cooled_down_provider_back_in(gateway, ray_cluster) -> None:
    gw = gateway({
        "policy": {"health": {"unhealthy_after": 2, "cooldown_s": 600},
                   "routing": {"ranking": "actors.policy.ranking:configured_order"}},
        "capabilities": {"email_sending": {"providers": [
            {"name": "primary", "adapter": "simulated", "settings": sim(failure_rate=1.0)},
            {"name": "backup", "adapter": "simulated", "settings": sim()}]}}})
    for i in range(2):
        gw.invoke("email_sending", "send_email", EMAIL, idempotency_key=f"k{i}")
    router = gw.router("email_sending")
    before = ray_cluster.get(router.status.remote())
    assert "primary" in before.skipped  # unhealthy, cooling down for ten minutes
    ray_cluster.get(gw.provider("email_sending", "primary").inject_fault.remote(failure_rate=0.0))
    check = ray_cluster.get(gw.supervisor.run_full_check.remote(), timeout=120)
    assert check.ok
    after = ray_cluster.get(router.status.remote())
    primary = next(p for p in after.providers if p.name == "primary")
    assert primary.health == "degraded" and "primary" not in after.skipped
    res = gw.invoke("email_sending", "send_email", EMAIL, idempotency_key="k-after")
    assert res.ok and res.provider == "primary"  # first in configured order, and back in


def test_an_auth_failure_names_the_exact_setting_and_variable_until_fixed(gateway, ray_cluster, monkeypatch) -> None:
    """tests/e2e covers the CLI's exit codes with a simulated auth error; here a
    real adapter (SendGrid, whose stand-in checks the key) reads its key from
    an environment variable, so the fix can name both; deploying again with
    the right key clears it."""
    from actors.sandbox.base import SandboxRunner
    from actors.sandbox.sendgrid import SendGridStandIn

    with SandboxRunner([SendGridStandIn(api_key="SG.right-key")]) as sandbox:
        config = {"capabilities": {"email_sending": {"providers": [
            {"name": "sendgrid", "adapter": "sendgrid",
             "settings": {"base_url": sandbox.url("sendgrid"), "api_key": "${SENDGRID_API_KEY}"}},
            {"name": "fallback", "adapter": "noop"}]}}}
        monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong-key")
        gw = gateway(config)
        check = ray_cluster.get(gw.supervisor.run_full_check.remote(), timeout=120)
        assert not check.ok
        auth = [r for r in check.recommendations if r.provider == "sendgrid" and "credentials" in r.problem]
        assert auth and auth[0].severity == "critical"
        assert ("check capabilities.email_sending.providers[0].settings.api_key "
                "(from environment variable SENDGRID_API_KEY)") in auth[0].fix
        assert "SG.wrong-key" not in check.to_dict().__repr__()
        unserved = [r for r in check.recommendations if r.provider is None]
        assert "no usable provider" in unserved[0].problem and "fallback" in unserved[0].problem  # noop delivers nothing

        monkeypatch.setenv("SENDGRID_API_KEY", "SG.right-key")
        gateway(config, namespace=gw.namespace)  # `up` again: the changed provider is replaced
        check = ray_cluster.get(gw.supervisor.run_full_check.remote(), timeout=120)
        assert check.ok
        assert not [r for r in check.recommendations if "credentials" in r.problem]
