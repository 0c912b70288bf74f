"""Delivery guarantees on a real local Ray, checked against the simulated
providers' ledger: exactly once across killed actors and restarts, the
outbox drained in order, deadlines and hedging."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from actors.errors import ErrorKind

pytestmark = pytest.mark.ray

EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


def sim(ledger: Path, **settings: Any) -> dict:
    return {"latency_ms": 5, "latency_jitter_ms": 3, "ledger": str(ledger), **settings}


def ledger_keys(path: Path) -> list[str]:
    return [json.loads(line)["idempotency_key"] for line in path.read_text().splitlines()] if path.exists() else []


def test_the_client_resends_what_a_killed_router_dropped_and_every_send_is_delivered_once(
        gateway, ray_cluster, tmp_path: Path) -> None:
    """The issue's measurement, with the client: 300 sends, half keyed by the
    caller and half not (the client keys those), the router killed a third
    and two thirds of the way in. No exception reaches the caller; the
    ledger has each send exactly once (tests/faults/accounting.py)."""
    from tests.faults.accounting import Request, account, read_ledger

    ledger = tmp_path / "ledger.jsonl"
    gw = gateway({"capabilities": {"email_sending": {"providers": [
        {"name": "primary", "adapter": "simulated", "settings": sim(ledger, seed=1, failure_rate=0.1)},
        {"name": "backup", "adapter": "simulated", "settings": sim(ledger, seed=2)}]}}})
    client = gw.client
    n, kills_at = 300, (100, 200)
    done: list[int] = []

    async def one(i: int, gate: asyncio.Semaphore) -> Any:
        async with gate:
            key = f"lead-{i}" if i % 2 else None
            res = await client.invoke_async("email_sending", "send_email", {**EMAIL, "subject": f"Welcome {i}"},
                                            idempotency_key=key, deadline_s=60)
            done.append(i)
            if len(done) in kills_at:
                ray_cluster.kill(client.router("email_sending"), no_restart=False)
            return res

    async def main() -> list[Any]:
        gate = asyncio.Semaphore(32)
        return await asyncio.gather(*(one(i, gate) for i in range(n)))

    results = asyncio.run(main())
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert client.resent > 0, "the kills hit no call in flight: the test proved nothing"
    requests = [Request("email_sending", "send_email", {}, r.idempotency_key) for r in results]
    verdict = account(requests, {r.idempotency_key: r for r in results}, read_ledger(ledger), [])
    assert verdict.problems == [] and verdict.delivered == n, verdict.summary()
    assert sum(r.idempotency_key.startswith("client-") for r in results) == n // 2
    # A repeat after all this delivers nothing.
    assert gw.invoke("email_sending", "send_email", {**EMAIL, "subject": "Welcome 7"}, idempotency_key="lead-7").replayed
    assert len(read_ledger(ledger)) == n


def test_repeat_keys_after_restarting_the_whole_gateway_deliver_nothing(gateway, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    config = {"capabilities": {"email_sending": {"providers": [
        {"name": "primary", "adapter": "simulated", "settings": sim(ledger, seed=1)}]}}}
    gw = gateway(config)
    first = [gw.invoke("email_sending", "send_email", EMAIL, idempotency_key=f"k{i}") for i in range(5)]
    gw.teardown()
    gw = gateway(config, namespace=gw.namespace)  # every actor new, the state directory kept
    again = [gw.invoke("email_sending", "send_email", EMAIL, idempotency_key=f"k{i}") for i in range(5)]
    assert all(r.replayed for r in again)
    assert [r.value for r in again] == [r.value for r in first]
    assert ledger_keys(ledger) == [f"k{i}" for i in range(5)]


def test_all_providers_down_queues_durably_then_drains_in_order_exactly_once(gateway, ray_cluster, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    gw = gateway({
        "policy": {"health": {"cooldown_s": 1}},
        "supervisor": {"check_interval_s": 0, "drain_interval_s": 0.3, "drain_rate_per_s": 200},
        "capabilities": {"email_sending": {"providers": [
            {"name": "primary", "adapter": "simulated", "settings": sim(ledger, seed=1, failure_rate=1.0)},
            {"name": "backup", "adapter": "simulated", "settings": sim(ledger, seed=2, failure_rate=1.0)},
            {"name": "outbox", "adapter": "outbox"}]}}})
    router = gw.router("email_sending")
    keys = [f"q{i}" for i in range(40)]
    queued = [ray_cluster.get(router.invoke.remote("send_email", {**EMAIL, "subject": k}, idempotency_key=k)) for k in keys]
    assert all(r.ok and r.provider == "outbox" and r.value["queued"] and r.outbox_id for r in queued)
    assert ledger_keys(ledger) == []
    items = ray_cluster.get(gw.supervisor.outbox_list.remote())
    assert [i.idempotency_key for i in items] == keys and {i.state for i in items} == {"pending"}

    for name in ("primary", "backup"):
        ray_cluster.get(gw.provider("email_sending", name).inject_fault.remote(failure_rate=0.0))
    gw.supervisor.ready.remote()  # starts the supervisor's drain loop
    deadline = time.monotonic() + 60
    while ray_cluster.get(gw.supervisor.outbox_list.remote()) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert ledger_keys(ledger) == keys  # each exactly once, oldest first
    repeat = gw.invoke("email_sending", "send_email", {**EMAIL, "subject": "q3"}, idempotency_key="q3")
    assert repeat.replayed and repeat.provider in ("primary", "backup") and "message_id" in repeat.value


def test_a_deadline_shorter_than_one_attempt_returns_promptly(gateway, tmp_path: Path) -> None:
    gw = gateway({"capabilities": {"email_verification": {"providers": [
        {"name": "slow", "adapter": "simulated", "settings": {"latency_ms": 2000}}]}}})
    started = time.monotonic()
    res = gw.invoke("email_verification", "verify_email", {"email": "ann@example.com"}, deadline_s=0.2)
    assert res.error.kind is ErrorKind.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5


def test_hedging_cuts_the_tail_of_a_slow_provider(gateway, ray_cluster, tmp_path: Path) -> None:
    def p99_ms(hedging: bool) -> tuple[float, int]:
        gw = gateway({"capabilities": {"lead_enrichment": {
            "policy": {"routing": {"hedging": {"enabled": hedging, "min_samples": 20, "budget_percent": 20}}},
            "providers": [
                # 5% of calls take 20x longer (a "timeout" that outlives nothing: latency only)
                {"name": "tail", "adapter": "simulated", "settings": {"latency_ms": 20, "seed": 3}},
                {"name": "steady", "adapter": "simulated", "settings": {"latency_ms": 25, "seed": 4}}]}}})
        slow = gw.provider("lead_enrichment", "tail")
        router = gw.router("lead_enrichment")
        latencies, hedges = [], 0
        for i in range(200):
            ray_cluster.get(slow.inject_fault.remote(latency_ms=400 if i % 20 == 19 else 20))
            res = ray_cluster.get(router.invoke.remote("enrich_person", {"email": f"p{i}@example.com"}))
            assert res.ok
            latencies.append(res.elapsed_ms)
            hedges += any(a.hedge for a in res.attempts)
        tail = sorted(latencies[40:])  # after warm-up
        return tail[int(0.99 * len(tail)) - 1], hedges

    plain, _ = p99_ms(False)
    hedged, hedges = p99_ms(True)
    assert hedged < plain * 0.5, (hedged, plain)
    assert 0 < hedges <= 40


def test_a_429_with_retry_after_throttles_then_traffic_resumes(gateway, ray_cluster) -> None:
    from actors.policy.health import Health
    from actors.sandbox.base import SandboxRunner
    from actors.sandbox.make import MakeStandIn
    from actors.sandbox.webhook import WebhookReceiverStandIn

    receiver, make = WebhookReceiverStandIn(), MakeStandIn()
    with SandboxRunner([receiver, make]):
        gw = gateway({"capabilities": {"webhook_dispatch": {
            "policy": {"routing": {"ranking": "actors.policy.ranking:configured_order"}},
            "providers": [{"name": "webhook", "adapter": "webhook", "settings": receiver.adapter_settings()},
                          {"name": "make", "adapter": "make", "settings": make.adapter_settings()}]}}})
        event = {"event": "lead.created", "data": {"lead": 1}}
        assert gw.invoke("webhook_dispatch", "dispatch", event).provider == "webhook"

        receiver.faults.update({"throttle_for_s": 3, "retry_after_s": 3})
        throttled = gw.invoke("webhook_dispatch", "dispatch", event)
        assert throttled.ok and throttled.provider == "make"
        assert throttled.attempts[0].error_kind is ErrorKind.RATE_LIMITED
        status = ray_cluster.get(gw.provider("webhook_dispatch", "webhook").status.remote())
        assert status.health is Health.THROTTLED and status.throttled_until - time.time() == pytest.approx(3, abs=1.0)

        during = gw.invoke("webhook_dispatch", "dispatch", event)
        assert [a.provider for a in during.attempts] == ["make"]  # skipped while throttled: not even asked
        seen = len(receiver.received)
        time.sleep(max(0.0, status.throttled_until - time.time()) + 0.3)
        after = gw.invoke("webhook_dispatch", "dispatch", event)
        assert after.provider == "webhook" and len(receiver.received) == seen + 1
        status = ray_cluster.get(gw.provider("webhook_dispatch", "webhook").status.remote())
        assert status.health not in (Health.THROTTLED, Health.UNHEALTHY)
