"""Live fault injection on a real local Ray cluster: a fault on the primary
moves traffic to the secondary with no failed request, shows in status and
the audit log, and is gone by itself after its time; a config can forbid it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from actors.errors import ErrorKind
from actors.policy.chaos.faults import ChaosPolicy, new_fault

pytestmark = pytest.mark.ray

EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


def allowed_fault(*args: object, **kw: object):
    """A fault as a client builds it from a config that allows chaos (the default forbids it)."""
    return new_fault(*args, policy=ChaosPolicy(allowed=True), **kw)  # type: ignore[arg-type]


def config(ledger: Path, **extra: object) -> dict:
    sim = {"latency_ms": 2, "ledger": str(ledger)}
    return {"chaos": {"allowed": True}, **extra, "capabilities": {"email_sending": {"providers": [
        {"name": "primary", "adapter": "simulated", "settings": {**sim, "seed": 1}},
        {"name": "backup", "adapter": "simulated", "settings": {**sim, "seed": 2}},
    ]}}}


def chaos_records(ray, router) -> list[dict]:
    ray.get(router.flush_ops.remote())
    tail = ray.get(router.audit_tail.remote(500))
    return [r for r in tail["records"] if r.get("type") == "chaos"]


def test_a_fault_on_the_primary_moves_traffic_and_ends_by_itself(gateway, ray_cluster, tmp_path: Path) -> None:
    ray = ray_cluster
    ledger = tmp_path / "l.jsonl"
    gw = gateway(config(ledger))
    router = gw.router("email_sending")
    assert gw.invoke("email_sending", "send_email", EMAIL).provider == "primary"

    fault = allowed_fault("email_sending", "primary", duration_s=5, now=time.time(), by="ann@ops-1", fault_id="game-day-1",
                      fail_rate=1.0, error="transient")
    event = ray.get(gw.supervisor.chaos_inject.remote(fault))
    assert event.fault.id == "game-day-1" and event.replaced is None
    assert [f.id for f in ray.get(gw.supervisor.chaos_list.remote())] == ["game-day-1"]

    results = [gw.invoke("email_sending", "send_email", EMAIL) for _ in range(20)]
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]  # no failed request
    assert all(r.provider == "backup" for r in results)
    injected = [a for r in results for a in r.attempts if a.injected]
    assert injected and all(a.provider == "primary" and a.error_kind is ErrorKind.TRANSIENT
                            and not a.maybe_delivered for a in injected)
    sent_by_primary = [e for e in (json.loads(x) for x in ledger.read_text().splitlines()) if e["provider"] == "primary"]
    assert len(sent_by_primary) == 1  # only the call before the fault: injected failures send nothing

    primary = next(p for c in gw.client.status().capabilities for p in c.providers if p.name == "primary")
    assert primary.fault is not None and primary.fault.id == "game-day-1" and primary.fault.fail_rate == 1.0
    assert primary.fault.injected_by == "ann@ops-1"

    records = chaos_records(ray, router)
    assert [(r["event"], r["provider"], r["by"]) for r in records] == [("injected", "primary", "ann@ops-1")]
    tail = ray.get(router.audit_tail.remote(50))["records"]
    assert any(a.get("injected") for r in tail if r.get("type") != "chaos" for a in r["attempts"])

    # A router restarted meanwhile learns the fault from its provider, so its expiry is still audited.
    ray.kill(router, no_restart=False)
    deadline = time.time() + 60
    while True:
        try:
            ray.get(router.ready.remote(), timeout=30)
            break
        except Exception:  # noqa: BLE001 - restarting
            assert time.time() < deadline
            time.sleep(0.5)

    # Gone by itself after its time: from the provider, status, the list; audited as expired.
    time.sleep(max(0.0, fault.expires_at - time.time()) + 1.5)
    deadline = time.time() + 60  # the expiry reaches the audit log a little later: waited for, not timed
    while time.time() < deadline and [r["event"] for r in chaos_records(ray, router)] != ["injected", "expired"]:
        time.sleep(0.5)
    assert [(r["event"], r["by"]) for r in chaos_records(ray, router)] == [("injected", "ann@ops-1"), ("expired", None)]
    assert ray.get(gw.supervisor.chaos_list.remote()) == []
    primary = next(p for c in gw.client.status().capabilities for p in c.providers if p.name == "primary")
    assert primary.fault is None
    assert ray.get(gw.provider("email_sending", "primary").fault.remote()) is None


def test_clear_ends_a_fault_at_once_and_is_audited(gateway, ray_cluster, tmp_path: Path) -> None:
    ray = ray_cluster
    gw = gateway(config(tmp_path / "l.jsonl"))
    fault = allowed_fault("email_sending", "primary", duration_s=600, now=time.time(), by="ann@ops-1", fault_id="f2",
                      latency_ms=50)
    ray.get(gw.supervisor.chaos_inject.remote(fault))
    res = gw.invoke("email_sending", "send_email", EMAIL)
    assert res.ok and res.provider == "primary" and res.attempts[0].injected and res.attempts[0].latency_ms >= 50
    cleared = ray.get(gw.supervisor.chaos_clear.remote("bob@ops-2"))
    assert [e.fault.id for e in cleared] == ["f2"]
    assert ray.get(gw.supervisor.chaos_list.remote()) == []
    assert not gw.invoke("email_sending", "send_email", EMAIL).attempts[0].injected
    records = chaos_records(ray, gw.router("email_sending"))
    assert [(r["event"], r["by"]) for r in records] == [("injected", "ann@ops-1"), ("cleared", "bob@ops-2")]


def test_a_config_that_forbids_it_refuses_at_the_supervisor(gateway, ray_cluster, tmp_path: Path) -> None:
    gw = gateway(config(tmp_path / "l.jsonl", chaos={"allowed": False}))
    fault = allowed_fault("email_sending", "primary", duration_s=5, now=time.time(), by="ann@ops-1", fault_id="f3",
                      fail_rate=1.0)  # built as a client that did not read the config would
    with pytest.raises(Exception, match=r"fault injection is forbidden by this gateway's config \(chaos.allowed: false\)"):
        ray_cluster.get(gw.supervisor.chaos_inject.remote(fault))
    assert ray_cluster.get(gw.supervisor.chaos_list.remote()) == []


def test_the_supervisor_and_the_provider_trust_no_callers_clock(gateway, ray_cluster, tmp_path: Path) -> None:
    """Issue 21: a fault stamped a month ahead is rebuilt on the supervisor's
    clock; one sent to the provider actor directly is checked there."""
    ray = ray_cluster
    gw = gateway(config(tmp_path / "l.jsonl"))
    month = 30 * 86400.0
    forged = allowed_fault("email_sending", "primary", duration_s=60, now=time.time() + month, by="mallory",
                           fault_id="f4", fail_rate=1.0)
    before = time.time()
    event = ray.get(gw.supervisor.chaos_inject.remote(forged))
    assert before <= event.fault.injected_at <= time.time() and event.fault.expires_at <= time.time() + 60
    held = ray.get(gw.provider("email_sending", "primary").fault.remote())
    assert held is not None and held.expires_at == event.fault.expires_at
    ray.get(gw.supervisor.chaos_clear.remote("ann"))
    with pytest.raises(Exception, match="at most"):
        ray.get(gw.provider("email_sending", "primary").set_fault.remote(forged))
    other = allowed_fault("email_sending", "backup", duration_s=60, now=time.time(), by="mallory", fault_id="f5",
                          fail_rate=1.0)
    with pytest.raises(Exception, match="no provider 'backup'"):
        ray.get(gw.provider("email_sending", "primary").set_fault.remote(other))
    assert ray.get(gw.provider("email_sending", "primary").fault.remote()) is None
