"""Actors killed during traffic, on the session's local Ray: every request is
accounted for by the simulated providers' ledger and the outbox (see
accounting.py). Not covered again here: one router killed during one
capability's sends, and one provider killed
(tests/integration/test_guarantees_on_ray.py, test_gateway_on_ray.py)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from actors.names import SUPERVISOR_NAME, provider_name, router_name
from tests.faults.accounting import CarefulCaller, Chaos, account, mixed_requests, read_ledger, request_for, sim, wait_until

pytestmark = pytest.mark.ray


def mixed_config(ledger: Path, drain_interval_s: float = 0.3) -> dict[str, Any]:
    def pair(seed: int, with_outbox: bool = False, failure_rate: float = 0.0) -> dict[str, Any]:
        providers = [
            {"name": "primary", "adapter": "simulated", "settings": sim(ledger, seed=seed, failure_rate=failure_rate)},
            {"name": "backup", "adapter": "simulated", "settings": sim(ledger, seed=seed + 1)},
        ]
        if with_outbox:
            providers.append({"name": "outbox", "adapter": "outbox"})
        return {"providers": providers}

    return {
        "policy": {"health": {"cooldown_s": 1}, "routing": {"deadline_s": 20, "unreachable_backoff_s": 0.3}},
        "supervisor": {"check_interval_s": 0, "drain_interval_s": drain_interval_s, "drain_rate_per_s": 200},
        "capabilities": {
            "email_sending": pair(10, with_outbox=True, failure_rate=0.05),
            "social_posting": pair(20),
            "webhook_dispatch": pair(30, with_outbox=True),
            "crm_sync": pair(40),
            "email_verification": {"providers": [
                {"name": "primary", "adapter": "simulated", "settings": sim(ledger, seed=50)}]},
        },
    }


def outbox_items(gw: Any, ray: Any) -> list[Any]:
    return ray.get(gw.supervisor.outbox_list.remote(None, True, 100_000), timeout=60)


def outbox_settled(gw: Any, ray: Any) -> bool:
    """Nothing pending. The supervisor is not poked: after its own restarts
    it must drain on its own (test_a_restarted_supervisor_drains_without_being_called)."""
    try:
        return not [i for i in outbox_items(gw, ray) if i.state == "pending"]
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return False


def inject(gw: Any, ray: Any, capability: str, names: list[str], **changes: Any) -> None:
    for name in names:
        try:
            ray.get(gw.provider(capability, name).inject_fault.remote(**changes), timeout=30)
        except ray.exceptions.RayActorError:
            pass  # killed just now: it comes back with its configured settings


def accounted_after_chaos(gw: Any, ray: Any, requests: list[Any], results: dict[str, Any], ledger: Path,
                          chaos: Chaos, caller: CarefulCaller) -> Any:
    """Once the outbox has drained: every request checked against the ledger and the outbox; no kill failed."""
    assert wait_until(lambda: outbox_settled(gw, ray), timeout_s=90, interval_s=0.5), "the outbox was never drained"
    verdict = account(requests, results, read_ledger(ledger), outbox_items(gw, ray))
    print(verdict.summary(), "| kills:", chaos.killed, "| caller:", caller.stats)
    assert not chaos.errors, chaos.errors
    assert verdict.problems == [], verdict.problems[:20]
    return verdict


def test_random_kills_of_every_actor_kind_during_mixed_traffic_lose_and_double_nothing(
        gateway, ray_cluster, tmp_path: Path) -> None:
    ray = ray_cluster
    ledger = tmp_path / "ledger.jsonl"
    gw = gateway(mixed_config(ledger))
    counts = {"email_sending": 150, "social_posting": 80, "webhook_dispatch": 100, "crm_sync": 80,
              "email_verification": 60}
    requests = mixed_requests(counts, seed=1)

    rng = random.Random(7)
    providers = [provider_name(cap, name) for cap in counts for name in ("primary", "backup")
                 if cap != "email_verification" or name == "primary"]
    routers = [router_name(cap) for cap in counts]
    victims = rng.sample(providers, 5) + rng.sample(routers, 4) + [SUPERVISOR_NAME, SUPERVISOR_NAME]
    rng.shuffle(victims)
    chaos = Chaos(ray, gw.namespace, victims, interval_s=(0.25, 0.6), seed=3, start_after_s=0.5)

    # An outage of every real email and webhook provider in the middle:
    # those requests go to the outbox (whose own actor dies while it
    # queues them), and are drained while actors die.
    def outage() -> None:
        time.sleep(1.0)
        inject(gw, ray, "email_sending", ["primary", "backup"], failure_rate=1.0)
        inject(gw, ray, "webhook_dispatch", ["primary", "backup"], failure_rate=1.0)
        time.sleep(0.7)
        ray.kill(gw.provider("email_sending", "outbox"), no_restart=False)
        chaos.killed.append((-1.0, provider_name("email_sending", "outbox")))
        time.sleep(0.8)
        inject(gw, ray, "email_sending", ["primary", "backup"], failure_rate=0.0)
        inject(gw, ray, "webhook_dispatch", ["primary", "backup"], failure_rate=0.0)

    outage_thread = threading.Thread(target=outage, daemon=True)
    caller = CarefulCaller(ray, gw.namespace, window=48)
    chaos.start()
    outage_thread.start()
    results = caller.run(requests, pace_s=0.008, timeout_s=240)
    chaos.join(timeout=60)
    outage_thread.join(timeout=60)

    verdict = accounted_after_chaos(gw, ray, requests, results, ledger, chaos, caller)
    # The faults really happened: every kind of actor died, the outbox was used.
    killed = {name.split(":")[0] for _, name in chaos.killed}
    assert killed == {"provider", "router", "supervisor"}, chaos.killed
    assert verdict.queued_then_delivered > 0, verdict.summary()
    assert caller.stats.resent_after_router_loss > 0, caller.stats


def test_providers_and_the_router_killed_during_batches_lose_and_double_nothing(
        gateway, ray_cluster, tmp_path: Path) -> None:
    # invoke_many: each provider gets its share of a batch in one call, and
    # claims and journals the batch's sends together; a kill lands mid-batch.
    ray = ray_cluster
    ledger = tmp_path / "ledger.jsonl"
    gw = gateway({
        "policy": {"health": {"cooldown_s": 1}, "routing": {"deadline_s": 20, "unreachable_backoff_s": 0.3}},
        "supervisor": {"check_interval_s": 0, "drain_interval_s": 0.3, "drain_rate_per_s": 200},
        "capabilities": {"email_sending": {"providers": [
            {"name": "primary", "adapter": "simulated", "settings": sim(ledger, seed=60, latency_ms=20, failure_rate=0.05)},
            {"name": "backup", "adapter": "simulated", "settings": sim(ledger, seed=61, latency_ms=20)},
            {"name": "outbox", "adapter": "outbox"}]}}})
    requests = [request_for("email_sending", i, "b") for i in range(600)]
    victims = [provider_name("email_sending", "primary"), router_name("email_sending"),
               provider_name("email_sending", "backup"), provider_name("email_sending", "primary"),
               router_name("email_sending")]
    chaos = Chaos(ray, gw.namespace, victims, interval_s=(0.3, 0.6), seed=5, start_after_s=0.4)
    caller = CarefulCaller(ray, gw.namespace, window=80, batch=20)
    chaos.start()
    results = caller.run(requests, pace_s=0.1, timeout_s=240)
    chaos.join(timeout=60)

    accounted_after_chaos(gw, ray, requests, results, ledger, chaos, caller)
    assert len(chaos.killed) == len(victims) and caller.stats.resent_after_router_loss > 0, (chaos.killed, caller.stats)


def test_queued_requests_drained_while_router_provider_and_supervisor_die_are_delivered_once(
        gateway, ray_cluster, tmp_path: Path) -> None:
    ray = ray_cluster
    ledger = tmp_path / "ledger.jsonl"
    # A request's deadline also bounds an outbox lease (deadline + 10 s, router/outbox_delivery.py): the
    # items the killed router had leased wait that long for another drain. 10 s, not the default 30: the
    # test spent the difference waiting at its end; each delivery here takes milliseconds.
    gw = gateway({
        "policy": {"health": {"cooldown_s": 0.5}, "routing": {"deadline_s": 10, "unreachable_backoff_s": 0.2}},
        "supervisor": {"check_interval_s": 0, "drain_interval_s": 0.2, "drain_rate_per_s": 60},
        "capabilities": {"email_sending": {"providers": [
            {"name": "primary", "adapter": "simulated", "settings": sim(ledger, seed=1)},
            {"name": "backup", "adapter": "simulated", "settings": sim(ledger, seed=2)},
            {"name": "outbox", "adapter": "outbox"}]}}})
    inject(gw, ray, "email_sending", ["primary", "backup"], failure_rate=1.0)
    requests = [request_for("email_sending", i, "q") for i in range(200)]
    caller = CarefulCaller(ray, gw.namespace, window=32, max_tries=1)
    results = caller.run(requests)
    assert all(r.ok and r.outbox_id is not None for r in results.values()), caller.stats
    assert read_ledger(ledger) == []

    inject(gw, ray, "email_sending", ["primary", "backup"], failure_rate=0.0)
    ray.get(gw.supervisor.ready.remote())  # its loops are running
    kills = [(20, router_name("email_sending")), (60, provider_name("email_sending", "primary")),
             (100, SUPERVISOR_NAME), (130, provider_name("email_sending", "backup"))]
    done = []
    for delivered, name in kills:
        assert wait_until(lambda n=delivered: len(read_ledger(ledger)) >= n, timeout_s=60, interval_s=0.02), \
            f"draining stalled at {len(read_ledger(ledger))} before killing {name}"
        ray.kill(ray.get_actor(name, namespace=gw.namespace), no_restart=False)
        done.append((len(read_ledger(ledger)), name))
    assert wait_until(lambda: outbox_settled(gw, ray), timeout_s=90, interval_s=0.5), "the outbox was never drained"

    items = outbox_items(gw, ray)
    verdict = account(requests, results, read_ledger(ledger), items)
    print(verdict.summary(), "| killed at (delivered, actor):", done)
    assert verdict.problems == [], verdict.problems[:20]
    assert verdict.queued_then_delivered == len(requests)
    # A repeat of any key now answers with its delivery and sends nothing.
    again = gw.invoke("email_sending", "send_email", requests[5].payload, idempotency_key=requests[5].key)
    assert again.ok and again.replayed and again.provider in ("primary", "backup")
    assert len(read_ledger(ledger)) == len(requests)


def test_a_restarted_supervisor_drains_without_being_called(gateway, ray_cluster, tmp_path: Path) -> None:
    # Found by this suite: the supervisor started its drain and self-check
    # loops on its first call only, so after Ray restarted it nothing drained
    # the outbox until someone called it. It now calls itself once created.
    ray = ray_cluster
    ledger = tmp_path / "ledger.jsonl"
    gw = gateway({
        "policy": {"health": {"cooldown_s": 0.5}},
        "supervisor": {"check_interval_s": 0, "drain_interval_s": 0.2, "drain_rate_per_s": 200},
        "capabilities": {"email_sending": {"providers": [
            {"name": "primary", "adapter": "simulated", "settings": sim(ledger, seed=1)},
            {"name": "outbox", "adapter": "outbox"}]}}})
    ray.get(gw.supervisor.ready.remote())   # the loop runs
    inject(gw, ray, "email_sending", ["primary"], failure_rate=1.0)
    requests = [request_for("email_sending", i, "s") for i in range(5)]
    results = CarefulCaller(ray, gw.namespace, max_tries=1).run(requests)
    if not all(r.outbox_id is not None for r in results.values()):
        pytest.fail(f"expected every request queued: {results}")
    # The provider is down, so nothing drains. Once no change of health is on
    # its way to the supervisor (a call in flight is retried on the restarted
    # actor, and would start its loop), the supervisor dies and Ray restarts
    # it. Then the provider comes back, unheard of: no request reaches it.
    time.sleep(2.0)
    ray.kill(gw.supervisor, no_restart=False)
    inject(gw, ray, "email_sending", ["primary"], failure_rate=0.0)
    drained = wait_until(lambda: len(read_ledger(ledger)) == len(requests), timeout_s=8)
    # Calling it (as `status` would) is enough to get it going: the loop works, it only never started.
    ray.get(gw.supervisor.ready.remote(), timeout=60)
    if not wait_until(lambda: len(read_ledger(ledger)) == len(requests), timeout_s=30):
        pytest.fail("even once called, the restarted supervisor did not drain")
    assert sorted(line["idempotency_key"] for line in read_ledger(ledger)) == sorted(r.key for r in requests)
    assert drained, "a restarted supervisor drained nothing until it was called"
