"""crm_sync through the router on a real local Ray, against the stand-ins
on loopback: success, auth failures, rate limits (rate_limited, throttled,
not unhealthy) and server errors with fallback.

One deployment; the test walks through its faults in an order that keeps
earlier throttles from hiding later steps. Ranking is the configured order
and the unhealthy threshold high, so the order of attempts is the
configured one throughout (tests/adapters/on_ray.py)."""

from __future__ import annotations

import time

import pytest

from actors.errors import ErrorKind
from actors.policy.health import Health
from actors.sandbox.airtable import AirtableStandIn
from actors.sandbox.base import SandboxRunner
from actors.sandbox.hubspot import HubSpotStandIn
from tests.adapters.on_ray import KEY, POLICY, faults, provider, status, trail

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def sandbox():
    runner = SandboxRunner([
        AirtableStandIn(api_key=KEY),              # Airtable's own limits: 5 req/s per base, then 30 s of 429s
        HubSpotStandIn(api_key=KEY),
    ]).start()
    yield runner
    runner.stop()


def test_crm_sync(gateway, sandbox):
    faults(sandbox)
    gw = gateway({"policy": POLICY, "capabilities": {"crm_sync": {"providers": [
        provider(sandbox, "airtable", base_id="appCRM", table="Contacts"),
        provider(sandbox, "hubspot"),
    ]}}})
    upsert = lambda **p: gw.invoke("crm_sync", "upsert_contact", {"email": "ann@acme.example", **p})  # noqa: E731

    first = upsert(first_name="Ann")
    again = upsert(company="Acme")
    assert first.ok and first.provider == "airtable" and first.value["created"] is True
    assert again.ok and again.provider == "airtable" and again.value["created"] is False
    assert again.value["record_id"] == first.value["record_id"]
    (record,) = sandbox["airtable"].records("appCRM", "Contacts")
    assert record["fields"] == {"Email": "ann@acme.example", "First Name": "Ann", "Company": "Acme"}

    faults(sandbox, airtable={"down": True, "status": 503})
    res = upsert(first_name="Ann")
    assert res.ok and res.provider == "hubspot" and res.value["created"] is True
    assert trail(res) == [("airtable", ErrorKind.TRANSIENT), ("hubspot", None)]

    faults(sandbox, airtable={"reject_auth": True})
    res = upsert(last_name="Lee")
    assert res.ok and res.value["created"] is False
    assert trail(res) == [("airtable", ErrorKind.AUTH), ("hubspot", None)]
    assert sandbox["hubspot"].by_email("ann@acme.example")["properties"]["lastname"] == "Lee"

    faults(sandbox, airtable={"down": True, "status": 502}, hubspot={"reject_auth": True})
    res = upsert()
    assert not res.ok and res.error.kind is ErrorKind.ALL_PROVIDERS_FAILED
    assert trail(res) == [("airtable", ErrorKind.TRANSIENT), ("hubspot", ErrorKind.AUTH)]
    faults(sandbox, airtable={"reject_auth": True}, hubspot={"down": True, "status": 500})
    assert trail(upsert()) == [("airtable", ErrorKind.AUTH), ("hubspot", ErrorKind.TRANSIENT)]

    # Airtable's own rate limit: a burst over 5 requests a second gets 429s,
    # which the adapter reads as "wait 30 s"; HubSpot serves the rest.
    faults(sandbox)
    sandbox["airtable"].clear_rate_limit()
    requests = [("upsert_contact", {"email": f"lead{i}@acme.example"}, {}) for i in range(15)]
    results = gw.ray.get(gw.router("crm_sync").invoke_many.remote(requests), timeout=120)
    assert all(r.ok for r in results)
    limited = [r for r in results if trail(r) == [("airtable", ErrorKind.RATE_LIMITED), ("hubspot", None)]]
    assert limited and all(trail(r) == [("airtable", None)] for r in results if r not in limited)
    airtable = status(gw, "crm_sync", "airtable")
    assert airtable.health is not Health.UNHEALTHY and airtable.last_error_kind is ErrorKind.RATE_LIMITED
    assert airtable.throttled_until - airtable.last_checked == pytest.approx(30.0)
    res = upsert()
    assert res.ok and trail(res) == [("hubspot", None)]          # Airtable is skipped while throttled

    # HubSpot's burst limit, with Airtable still throttled: nothing is left to serve.
    sandbox["hubspot"].faults.update({"throttle_for_s": 60})
    res = upsert()
    assert trail(res) == [("hubspot", ErrorKind.RATE_LIMITED)]
    hubspot = status(gw, "crm_sync", "hubspot")
    assert hubspot.health is not Health.UNHEALTHY and hubspot.throttled_until > time.time() + 5
    res = upsert()
    assert res.error.kind is ErrorKind.RATE_LIMITED and res.attempts == [] and res.error.retry_after_s > 5
