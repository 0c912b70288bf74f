"""The PostgreSQL store going away mid-traffic, on the shared local Ray.

Keyed sends keep coming while the server is killed (an immediate shutdown:
connections cut, nothing checkpointed) and started again a few seconds
later. A request that needs the store meanwhile waits for it within its
deadline, or fails as `store_unavailable` having sent nothing; the careful
caller sends those again with their keys. In the end every request is in
the ledger exactly once. During the outage, `status` and `self-check` show
the store's health and a recommendation names `state.url` and the fix.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from actors.errors import ErrorKind
from tests.faults.accounting import CarefulCaller, account, read_ledger, request_for, sim

pytestmark = pytest.mark.ray


def test_a_store_restarted_mid_traffic_loses_and_doubles_nothing(gateway: Any, ray_cluster: Any, postgres: Any,
                                                                  postgres_database: Any, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    url = postgres_database.url.replace("aicmo@", f"aicmo:{postgres_database.password}@", 1)
    gw = gateway({
        "state": {"url": url},
        "policy": {"routing": {"deadline_s": 4}},
        "capabilities": {"email_sending": {"providers": [
            {"name": "primary", "adapter": "simulated", "settings": sim(ledger, seed=1)},
            {"name": "backup", "adapter": "simulated", "settings": sim(ledger, seed=2)}]}}})
    requests = [request_for("email_sending", i, "outage") for i in range(150)]
    caller = CarefulCaller(ray_cluster, gw.namespace, window=8, retry_delay_s=0.5, max_tries=60)
    seen: dict[str, Any] = {}

    def outage() -> None:
        while len(read_ledger(ledger)) < 40:
            time.sleep(0.05)
        with postgres.down(mode="immediate"):
            time.sleep(1.5)  # long enough for requests to need it
            seen["status"] = ray_cluster.get(gw.supervisor.status_report.remote(), timeout=60)
            seen["check"] = ray_cluster.get(gw.supervisor.run_full_check.remote(), timeout=60)
            time.sleep(2.0)

    breaker = threading.Thread(target=outage)
    breaker.start()
    results = caller.run(requests, pace_s=0.01, timeout_s=240)
    breaker.join(timeout=120)

    verdict = account(requests, results, read_ledger(ledger), outbox=[])
    assert not verdict.problems, verdict.summary() + "\n" + "\n".join(verdict.problems[:10])
    assert verdict.delivered == len(requests)

    status = seen["status"]
    assert status.store is not None and not status.store.ok and status.store.kind == "postgresql"
    assert postgres_database.password not in (status.store.last_error or "") + status.store.url
    [rec] = [r for r in seen["check"].recommendations if "state store" in r.problem]
    assert rec.severity == "critical" and "state.url" in rec.fix and postgres_database.password not in rec.fix
    # The ones that could not wait it out said why, and sent nothing.
    failures = caller.stats.errors
    assert set(failures) <= {str(ErrorKind.STORE_UNAVAILABLE), str(ErrorKind.DEADLINE_EXCEEDED)}, failures
    assert max(ms for _, ms in caller.latencies_ms) > 1000  # some waited the outage out (or were sent again)
    after = ray_cluster.get(gw.supervisor.status_report.remote(), timeout=60)
    assert after.store.ok
