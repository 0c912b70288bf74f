"""crm_sync, lead_enrichment and email_verification through the router on a real
local Ray, against the stand-ins on loopback: success, auth failures, rate
limits (rate_limited, throttled, not unhealthy) and server errors with fallback.

One deployment per capability; each test walks through its faults in an order
that keeps earlier throttles from hiding later steps. Ranking is the
configured order and the unhealthy threshold high, so the order of attempts
is the configured one throughout."""

from __future__ import annotations

import time
from typing import Any

import pytest

from actors.errors import ErrorKind
from actors.policy.health import Health
from actors.sandbox.airtable import AirtableStandIn
from actors.sandbox.apollo import ApolloStandIn
from actors.sandbox.base import Faults, SandboxRunner
from actors.sandbox.dropcontact import DropcontactStandIn
from actors.sandbox.hubspot import HubSpotStandIn
from actors.sandbox.neverbounce import NeverBounceStandIn
from actors.sandbox.zerobounce import ZeroBounceStandIn

pytestmark = pytest.mark.ray

KEY = "ray-stand-in-key"
# Strict priority, a high unhealthy threshold, fallbacks never capped by the
# retry budget, and no waiting for a throttle to pass: each step's attempts
# are then exactly the configured order's.
POLICY = {"routing": {"ranking": "actors.policy.ranking:configured_order", "attempt_timeout_s": 3, "deadline_s": 20,
                      "retry_budget": {"percent": 100, "min_per_s": 1000}, "wait_for_throttle": False},
          "health": {"unhealthy_after": 50, "default_throttle_s": 30}}


@pytest.fixture(scope="module")
def sandbox():
    runner = SandboxRunner([
        AirtableStandIn(api_key=KEY),              # Airtable's own limits: 5 req/s per base, then 30 s of 429s
        HubSpotStandIn(api_key=KEY),
        ApolloStandIn(api_key=KEY),
        DropcontactStandIn(api_key=KEY, ready_after_polls=2),
        ZeroBounceStandIn(api_key=KEY),
        NeverBounceStandIn(api_key=KEY),
    ]).start()
    yield runner
    runner.stop()


def faults(sandbox: SandboxRunner, **per_stand_in: dict[str, Any]) -> None:
    """Set each named stand-in's faults; every other stand-in gets none."""
    for name, stand_in in sandbox.stand_ins.items():
        stand_in.faults = Faults()
        stand_in.faults.update(dict(per_stand_in.get(name, {})))


def trail(result: Any) -> list[tuple[str, ErrorKind | None]]:
    return [(a.provider, a.error_kind) for a in result.attempts]


def status(gw: Any, capability: str, name: str) -> Any:
    return gw.ray.get(gw.provider(capability, name).status.remote())


def provider(sandbox: SandboxRunner, adapter: str, name: str | None = None, **settings: Any) -> dict[str, Any]:
    secret = {"token": KEY} if adapter in ("airtable", "hubspot") else {"api_key": KEY}
    return {"name": name or adapter, "adapter": adapter,
            "settings": {"base_url": sandbox.url(adapter), **secret, **settings}}


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


def test_email_verification(gateway, sandbox):
    faults(sandbox)
    policy = {**POLICY, "routing": {**POLICY["routing"], "attempt_timeout_s": 1.0}}
    gw = gateway({"policy": policy, "capabilities": {"email_verification": {"providers": [
        provider(sandbox, "dropcontact", poll_interval_s=0.01),
        provider(sandbox, "neverbounce"),
        provider(sandbox, "zerobounce"),
    ]}}})
    verify = lambda email: gw.invoke("email_verification", "verify_email", {"email": email})  # noqa: E731

    # Dropcontact answers asynchronously: submit, two "not ready yet", then the result.
    sandbox["dropcontact"].received.clear()
    res = verify("ann@acme.example")
    assert res.ok and res.provider == "dropcontact"
    assert res.value["status"] == "valid" and res.value["qualification"] == "nominative@pro"
    assert [r.method for r in sandbox["dropcontact"].received] == ["POST", "GET", "GET", "GET"]

    # Never ready within the attempt's second: a timeout that names the request, and NeverBounce serves.
    sandbox["dropcontact"].ready_after_polls = 10**6
    try:
        res = verify("ann@acme.example")
    finally:
        sandbox["dropcontact"].ready_after_polls = 2
    assert res.ok and trail(res) == [("dropcontact", ErrorKind.TIMEOUT), ("neverbounce", None)]
    assert any(request_id in res.attempts[0].error for request_id in sandbox["dropcontact"].jobs)

    faults(sandbox, dropcontact={"down": True, "status": 503})
    assert verify("catchall@acme.example").value["status"] == "risky"
    res = verify("someone@mailinator.com")
    assert res.provider == "neverbounce" and res.value["status"] == "invalid"
    assert res.value["provider_result"] == "disposable"

    # NeverBounce's errors arrive inside HTTP 200s: auth_failure is auth, and ZeroBounce serves.
    faults(sandbox, dropcontact={"down": True}, neverbounce={"reject_auth": True})
    res = verify("catchall@acme.example")
    assert trail(res) == [("dropcontact", ErrorKind.TRANSIENT), ("neverbounce", ErrorKind.AUTH), ("zerobounce", None)]
    assert res.value["status"] == "risky" and res.value["provider_status"] == "catch-all"
    assert verify("spamtrap@acme.example").value["status"] == "invalid"
    role = verify("info@acme.example").value
    assert (role["status"], role["sub_status"]) == ("risky", "role_based")

    # temp_unavail (a 200) is transient; ZeroBounce's bad-key answer (a 200 too) is auth.
    faults(sandbox, dropcontact={"down": True}, neverbounce={"down": True}, zerobounce={"reject_auth": True})
    res = verify("ann@acme.example")
    assert not res.ok and trail(res) == [("dropcontact", ErrorKind.TRANSIENT), ("neverbounce", ErrorKind.TRANSIENT),
                                         ("zerobounce", ErrorKind.AUTH)]
    assert all(r.status == 200 for r in sandbox["neverbounce"].received[-1:] + sandbox["zerobounce"].received[-1:])

    faults(sandbox, dropcontact={"down": True}, neverbounce={"reject_auth": True}, zerobounce={"down": True})
    assert trail(verify("ann@acme.example")) == [("dropcontact", ErrorKind.TRANSIENT), ("neverbounce", ErrorKind.AUTH),
                                                 ("zerobounce", ErrorKind.TRANSIENT)]

    faults(sandbox, dropcontact={"reject_auth": True})
    assert trail(verify("ann@acme.example")) == [("dropcontact", ErrorKind.AUTH), ("neverbounce", None)]

    # throttle_triggered (a 200) is a rate limit: NeverBounce is throttled, not unhealthy.
    faults(sandbox, dropcontact={"down": True}, neverbounce={"throttle_for_s": 60})
    res = verify("ann@acme.example")
    assert res.ok and trail(res) == [("dropcontact", ErrorKind.TRANSIENT), ("neverbounce", ErrorKind.RATE_LIMITED),
                                     ("zerobounce", None)]
    neverbounce = status(gw, "email_verification", "neverbounce")
    assert neverbounce.health is not Health.UNHEALTHY and neverbounce.last_error_kind is ErrorKind.RATE_LIMITED
    # NeverBounce names no wait: the health policy's default_throttle_s applies.
    assert neverbounce.throttled_until - neverbounce.last_checked == pytest.approx(30.0)

    # ZeroBounce's 429 blocks for a minute (NeverBounce, still throttled, is skipped).
    faults(sandbox, dropcontact={"down": True}, zerobounce={"throttle_for_s": 60})
    res = verify("ann@acme.example")
    assert trail(res) == [("dropcontact", ErrorKind.TRANSIENT), ("zerobounce", ErrorKind.RATE_LIMITED)]
    zerobounce = status(gw, "email_verification", "zerobounce")
    assert zerobounce.health is not Health.UNHEALTHY
    assert zerobounce.throttled_until - zerobounce.last_checked == pytest.approx(60.0)
