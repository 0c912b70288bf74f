"""lead_enrichment through the router on a real local Ray, against the
stand-ins on loopback: success, auth failures, rate limits (rate_limited,
throttled, not unhealthy) and server errors with fallback.

One deployment; the test walks through its faults in an order that keeps
earlier throttles from hiding later steps. Ranking is the configured order
and the unhealthy threshold high, so the order of attempts is the
configured one throughout (tests/adapters/on_ray.py)."""

from __future__ import annotations

import pytest

from actors.errors import ErrorKind
from actors.policy.health import Health
from actors.sandbox.apollo import ApolloStandIn
from actors.sandbox.base import SandboxRunner
from actors.sandbox.dropcontact import DropcontactStandIn
from tests.adapters.on_ray import KEY, POLICY, faults, provider, status, trail

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def sandbox():
    runner = SandboxRunner([
        ApolloStandIn(api_key=KEY),
        DropcontactStandIn(api_key=KEY, ready_after_polls=2),
    ]).start()
    yield runner
    runner.stop()


def test_lead_enrichment(gateway, sandbox):
    faults(sandbox)
    gw = gateway({"policy": POLICY, "capabilities": {"lead_enrichment": {"providers": [
        provider(sandbox, "apollo"),
        provider(sandbox, "dropcontact", poll_interval_s=0.01),
    ]}}})
    enrich = lambda email: gw.invoke("lead_enrichment", "enrich_person", {"email": email})  # noqa: E731

    found = enrich("ann@acme.example")
    assert found.ok and found.provider == "apollo" and found.value["found"] is True
    assert found.value["person"]["title"] == "VP Marketing" and found.value["person"]["company"] == "Acme"
    missing = enrich("stranger@acme.example")
    assert missing.ok and missing.value == {"found": False, "person": None} and trail(missing) == [("apollo", None)]

    faults(sandbox, apollo={"reject_auth": True})
    res = enrich("bob.martin@globex.example")
    assert res.ok and res.provider == "dropcontact" and res.value["person"]["company"] == "Globex"
    assert trail(res) == [("apollo", ErrorKind.AUTH), ("dropcontact", None)]

    faults(sandbox, apollo={"down": True, "status": 503})
    res = enrich("chloe@initech.example")
    assert res.ok and res.value["person"]["title"] == "CTO"
    assert trail(res) == [("apollo", ErrorKind.TRANSIENT), ("dropcontact", None)]

    faults(sandbox, apollo={"down": True, "status": 503}, dropcontact={"reject_auth": True})
    assert trail(enrich("ann@acme.example")) == [("apollo", ErrorKind.TRANSIENT), ("dropcontact", ErrorKind.AUTH)]
    faults(sandbox, apollo={"reject_auth": True}, dropcontact={"down": True, "status": 500})
    assert trail(enrich("ann@acme.example")) == [("apollo", ErrorKind.AUTH), ("dropcontact", ErrorKind.TRANSIENT)]

    # Apollo's minute window used up: the adapter waits for the next minute.
    faults(sandbox)
    sandbox["apollo"].limits["minute"] = 0
    try:
        res = enrich("ann@acme.example")
    finally:
        sandbox["apollo"].limits["minute"] = 200
    assert res.ok and trail(res) == [("apollo", ErrorKind.RATE_LIMITED), ("dropcontact", None)]
    apollo = status(gw, "lead_enrichment", "apollo")
    assert apollo.health is not Health.UNHEALTHY and 0 < apollo.throttled_until - apollo.last_checked <= 60

    sandbox["dropcontact"].faults.update({"throttle_for_s": 60, "retry_after_s": 5})
    res = enrich("ann@acme.example")
    assert trail(res) == [("dropcontact", ErrorKind.RATE_LIMITED)]
    dropcontact = status(gw, "lead_enrichment", "dropcontact")
    assert dropcontact.health is not Health.UNHEALTHY
    assert dropcontact.throttled_until - dropcontact.last_checked == pytest.approx(5.0)
