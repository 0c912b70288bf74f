"""The best provider's actor restarts mid-traffic (issue 10, item 1).

Three simulated email providers: `dead` (fails every request, transiently),
`flaky` (30%) and `solid` (never); no outbox. `solid` is killed with
`ray.kill(no_restart=False)` a third of the way into 200 keyed sends. While
Ray restarts it, requests that every other provider fails are tried again
in rounds within their deadline; once back, `solid` tells its router, which
tries it at once and hands it back the health it had, so it is first again
rather than ranked behind `flaky`. Every request is delivered exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.faults.accounting import read_ledger, sim

pytestmark = pytest.mark.ray

EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


def test_requests_wait_out_the_best_providers_restart_and_it_is_first_again(gateway: Any, ray_cluster: Any,
                                                                              tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    gw = gateway({
        "policy": {"routing": {"deadline_s": 30}},
        "capabilities": {"email_sending": {"providers": [
            {"name": "dead", "adapter": "simulated", "settings": sim(ledger, seed=1, failure_rate=1.0, error="transient")},
            {"name": "flaky", "adapter": "simulated", "settings": sim(ledger, seed=2, failure_rate=0.3, error="transient")},
            {"name": "solid", "adapter": "simulated", "settings": sim(ledger, seed=3)}]}}})
    router = gw.router("email_sending")
    keys = [f"restart-{i}" for i in range(200)]

    def send(batch: list[str]) -> list[Any]:
        return [router.invoke.remote("send_email", {**EMAIL, "subject": k}, idempotency_key=k) for k in batch]

    def in_windows(batch: list[str], window: int = 10) -> list[Any]:
        """A steady stream, a few in flight at a time, as a driver sends."""
        out: list[Any] = []
        for start in range(0, len(batch), window):
            out += ray_cluster.get(send(batch[start:start + window]), timeout=120)
        return out

    results = in_windows(keys[:66])
    solid = gw.provider("email_sending", "solid")
    ray_cluster.kill(solid, no_restart=False)
    results += in_windows(keys[66:100])  # sent while solid restarts
    back = time.monotonic() + 60
    while ray_cluster.get(router.status.remote(), timeout=30).providers[0].name != "solid":
        assert time.monotonic() < back, "solid never came back first"
        time.sleep(0.2)
    later = in_windows(keys[100:])
    results += later

    failed = [(r.idempotency_key, r.error) for r in results if not r.ok]
    assert not failed, failed[:5]
    delivered = Counter(line["idempotency_key"] for line in read_ledger(ledger))
    assert set(delivered) == set(keys) and set(delivered.values()) == {1}  # each exactly once
    attempts_after = sum(len(r.attempts) for r in later) / len(later)
    assert attempts_after <= 1.2, attempts_after  # solid first again: no detour through flaky and dead
    counters = ray_cluster.get(router.counters.remote(), timeout=30)
    assert counters.get("retry_rounds", 0) > 0  # the outage was felt and waited out
