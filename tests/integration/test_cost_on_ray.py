"""Cost- and quota-aware routing on a real local Ray cluster: by_cost sends
to the cheap provider until its quota is spent, then to the dearer one,
each later decision saying `quota_exhausted`; health is untouched; status
shows the spend and the quota left; the spend survives a restart of the
provider actor (it lives in the store)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from actors.cli import render
from actors.errors import ErrorKind

pytestmark = pytest.mark.ray

CAP = "email_verification"


def config(tmp_path: Path, cheap_quota: int = 20, dear_quota: int | None = None) -> dict[str, Any]:
    sim = {"latency_ms": 1}
    dear: dict[str, Any] = {"name": "dear", "adapter": "simulated", "settings": {**sim, "seed": 2},
                            "cost": {"per_call": "0.02", "currency": "USD"}}
    if dear_quota is not None:
        dear["quota"] = {"limit": dear_quota, "per": "day"}
    return {"capabilities": {CAP: {
        "policy": {"routing": {"ranking": "actors.policy.ranking:by_cost"}},
        "providers": [
            dear,  # configured first: by_cost, not the order, puts the cheap one first
            {"name": "cheap", "adapter": "simulated", "settings": {**sim, "seed": 1},
             "cost": {"per_call": "0.008", "currency": "USD"}, "quota": {"limit": cheap_quota, "per": "hour"}},
        ]}}}


def provider_json(gw: Any) -> dict[str, dict[str, Any]]:
    """status --json, per provider of the capability."""
    doc = json.loads(render.as_json(gw.client.status()))
    [cap] = [c for c in doc["capabilities"] if c["capability"] == CAP]
    return {p["name"]: p for p in cap["providers"]}


def wait_for(check: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def stored_calls(gw: Any, provider: str) -> int:
    """The calls of `provider` in the store's spend rows for the current periods (what a restart reloads)."""
    from actors.specs import open_spec_store

    async def read() -> int:
        store = open_spec_store(gw.state)
        try:
            return sum(r.calls for r in await store.spend_get(CAP, time.time()) if r.provider == provider)
        finally:
            await store.close()

    return asyncio.run(read())


def back_up(ray: Any, gw: Any) -> bool:
    try:
        return bool(ray.get(gw.provider(CAP, "cheap").ready.remote(), timeout=30))
    except ray.exceptions.RayError:  # restarting
        return False


def test_by_cost_spends_the_cheap_quota_then_falls_back_and_keeps_spend_across_a_restart(
        gateway, ray_cluster, tmp_path: Path) -> None:
    gw = gateway(config(tmp_path))
    router = gw.router(CAP)
    results = [gw.invoke(CAP, "verify_email", {"email": f"lead{i}@example.com"}) for i in range(30)]
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert [r.provider for r in results] == ["cheap"] * 20 + ["dear"] * 10
    assert all(len(r.attempts) == 1 for r in results)  # a spent quota is skipped, never tried

    records = ray_cluster.get(router.audit_tail.remote(30), timeout=60)["records"]
    assert [r["request_id"] for r in records] == [r.request_id for r in results]
    assert all(r["skipped"] == {} for r in records[:20])
    assert all(r["skipped"]["cheap"].startswith("quota_exhausted") for r in records[20:]), records[20]["skipped"]

    status = provider_json(gw)
    cheap, dear = status["cheap"], status["dear"]
    assert cheap["spend"] == pytest.approx(20 * 0.008) and cheap["currency"] == "USD"
    assert (cheap["quota_left"], cheap["quota_limit"], cheap["quota_exhausted"]) == (0, 20, "quota")
    assert dear["spend"] == pytest.approx(10 * 0.02) and dear["quota_left"] is None
    # Not counted against health: every call it made succeeded, none failed.
    assert cheap["health"] == "healthy" and cheap["total_failures"] == 0 and cheap["total_calls"] == 20

    # The spend lives in the store: a restarted provider actor still has it. The actor flushes its
    # increments about every second: killed before that, it would lose them (by design, for now).
    assert wait_for(lambda: stored_calls(gw, "cheap") == 20), stored_calls(gw, "cheap")
    ray_cluster.kill(gw.provider(CAP, "cheap"), no_restart=False)
    assert wait_for(lambda: back_up(ray_cluster, gw), 60)
    restarted = wait_for(lambda: provider_json(gw)["cheap"]["quota_left"] == 0 and provider_json(gw)["cheap"])
    assert restarted, provider_json(gw)["cheap"]
    assert restarted["spend"] == pytest.approx(20 * 0.008) and restarted["quota_exhausted"] == "quota"
    after = gw.invoke(CAP, "verify_email", {"email": "after@example.com"})
    assert after.ok and after.provider == "dear"


def test_every_quota_spent_fails_with_a_retry_after_until_the_period_turns(gateway, ray_cluster, tmp_path: Path) -> None:
    gw = gateway(config(tmp_path, cheap_quota=2, dear_quota=2))
    results = [gw.invoke(CAP, "verify_email", {"email": f"lead{i}@example.com"}) for i in range(5)]
    assert [r.provider for r in results[:4]] == ["cheap", "cheap", "dear", "dear"]
    last = results[4]
    assert not last.ok and last.error.kind is ErrorKind.NO_AVAILABLE_PROVIDER and last.attempts == []
    assert "quota_exhausted" in last.error.message
    # The earliest period end: the cheap one's hour.
    assert 0 < last.error.retry_after_s <= 3600
