"""A provider's configured rate limit holds for its capability whatever the
number of routers (issue 20, item 3): two router actors of crm_sync on one
Ray, the deployed one and a second the test starts by hand (as replicas
will be), press the Airtable stand-in together at twice its pace. The
stand-in counts what it receives: never more than Airtable's 5 requests in
any second, so never a 429 (and its 30 s of refusals).

Each router's own bucket lets it send 3 a second; without the provider
actor holding the limit for both, the stand-in would get about 6. (At 4 a
second, config/default.yaml's pace, a request held up a quarter of a second
on a loaded machine lands in the next one's second at the stand-in: the
limit holds at the sender, the stand-in counts arrivals.)"""

from __future__ import annotations

import uuid

import pytest

from actors.errors import ErrorKind
from actors.sandbox.airtable import AirtableStandIn
from actors.sandbox.base import SandboxRunner
from tests.adapters.on_ray import KEY, provider

pytestmark = pytest.mark.ray

PER_ROUTER = 16
# Under Airtable's 5/s with room for arrivals bunched by a loaded machine, and over it for two routers each on its own.
AIRTABLE = {"provider": {"rate_limit_per_s": 3, "rate_limit_burst": 1}}


@pytest.fixture(scope="module")
def sandbox():
    runner = SandboxRunner([AirtableStandIn(api_key=KEY)]).start()  # 5 req/s per base, then 30 s of 429s
    yield runner
    runner.stop()


def most_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    return max((sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times)), default=0)


def test_two_routers_keep_to_the_providers_rate_limit_together(gateway, sandbox):
    from actors.router.actor import RouterActor

    gw = gateway({"policy": {"routing": {"deadline_s": 90, "attempt_timeout_s": 10}},
                  "capabilities": {"crm_sync": {"providers": [
                      {**provider(sandbox, "airtable", base_id="appRL", table="Contacts"), "policy": AIRTABLE}]}}})
    spec = next(c for c in gw.ray.get(gw.supervisor.spec.remote(), timeout=60).capabilities
                if c.capability == "crm_sync")
    second = RouterActor.options(name=f"second-router-{uuid.uuid4().hex[:6]}", namespace=gw.namespace,
                                 num_cpus=0).remote(spec, gw.namespace)
    try:
        gw.ray.get(second.ready.remote(), timeout=60)
        routers = [gw.router("crm_sync"), second]
        batches = [[("upsert_contact", {"email": f"r{n}-{i}@acme.example"}, {}) for i in range(PER_ROUTER)]
                   for n in range(2)]
        results = gw.ray.get([r.invoke_many.remote(b) for r, b in zip(routers, batches, strict=True)], timeout=300)
    finally:
        gw.ray.kill(second, no_restart=True)

    writes = [r for r in sandbox["airtable"].received if r.method != "GET"]
    assert [r.status for r in writes if r.status == 429] == []
    assert most_in_one_second([r.at for r in writes]) <= 5
    # Both routers were served; what was not failed as rate limited, saying when to come back.
    for per_router in results:
        assert any(r.ok for r in per_router)
        for r in per_router:
            assert r.ok or (r.error.kind is ErrorKind.RATE_LIMITED and r.error.retry_after_s), r.error
    assert len(writes) == sum(r.ok for rs in results for r in rs)  # a refusal at the provider sent nothing
    assert len(sandbox["airtable"].records("appRL", "Contacts")) == len(writes)
