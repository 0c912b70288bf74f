"""The crm_sync stand-ins (Airtable, HubSpot) behave like their providers,
checked through the real adapters over loopback HTTP (no Ray). Clocks are
injected where time matters (tests/adapters/loopback.py)."""

from __future__ import annotations

import time

import httpx
import pytest

from actors.adapters.crm.airtable import AirtableAdapter
from actors.adapters.crm.hubspot import HubSpotAdapter
from actors.errors import AuthError, ProviderRejected, RateLimited
from actors.payloads import UpsertContact
from actors.sandbox.airtable import AirtableStandIn
from actors.sandbox.base import SandboxRunner
from actors.sandbox.hubspot import HubSpotStandIn
from tests.adapters.recorder import ctx
from tests.adapters.loopback import CLOCK, KEY, adapter, fresh, run  # noqa: F401 - fresh: an autouse fixture


@pytest.fixture(scope="module")
def sandbox():
    runner = SandboxRunner([
        AirtableStandIn(api_key=KEY, requests_per_s=3, penalty_s=30, clock=CLOCK),
        HubSpotStandIn(api_key=KEY, requests_per_10s=50, clock=CLOCK),
    ]).start()
    yield runner
    runner.stop()


# --- Airtable ---------------------------------------------------------------------

def airtable(sandbox, **settings):
    return adapter(AirtableAdapter, sandbox, base_id="appCRM", table="Contacts", **settings)


def test_airtable_upsert_creates_then_merges_into_the_same_record(sandbox):
    a = airtable(sandbox)
    first = run(a.upsert_contact(UpsertContact(email="ann@acme.example", first_name="Ann"), ctx("upsert_contact")))
    second = run(a.upsert_contact(UpsertContact(email="ann@acme.example", company="Acme", fields={"Stage": "Lead"}),
                                  ctx("upsert_contact")))
    assert first["created"] is True and second["created"] is False and first["record_id"] == second["record_id"]
    records = sandbox["airtable"].records("appCRM", "Contacts")
    assert len(records) == 1 and records[0]["fields"] == {
        "Email": "ann@acme.example", "First Name": "Ann", "Company": "Acme", "Stage": "Lead"}


def test_airtable_refuses_more_than_ten_records_and_unknown_fields(sandbox):
    url = sandbox.url("airtable") + "/v0/appCRM/Contacts"
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"performUpsert": {"fieldsToMergeOn": ["Email"]},
            "records": [{"fields": {"Email": f"p{i}@acme.example"}} for i in range(11)]}
    answer = httpx.patch(url, json=body, headers=headers)
    assert answer.status_code == 422 and answer.json()["error"]["type"] == "INVALID_RECORDS"
    sandbox["airtable"].known_fields = {"Email", "First Name"}
    try:
        with pytest.raises(ProviderRejected, match='UNKNOWN_FIELD_NAME.*Unknown field name: "Company"'):
            run(airtable(sandbox).upsert_contact(UpsertContact(email="a@acme.example", company="Acme"),
                                                 ctx("upsert_contact")))
    finally:
        sandbox["airtable"].known_fields = None


def test_airtable_refuses_an_upsert_matching_two_records(sandbox):
    url = sandbox.url("airtable") + "/v0/appCRM/Contacts"
    headers = {"Authorization": f"Bearer {KEY}"}
    twice = {"records": [{"fields": {"Email": "dup@acme.example"}}, {"fields": {"Email": "dup@acme.example"}}]}
    assert httpx.post(url, json=twice, headers=headers).status_code == 200
    with pytest.raises(ProviderRejected, match="2 records match"):
        run(airtable(sandbox).upsert_contact(UpsertContact(email="dup@acme.example"), ctx("upsert_contact")))


def test_airtable_429_keeps_refusing_for_its_penalty_window(sandbox):
    a = airtable(sandbox)
    for i in range(3):                                     # the stand-in allows 3 a second here
        run(a.upsert_contact(UpsertContact(email=f"p{i}@acme.example"), ctx("upsert_contact")))
    with pytest.raises(RateLimited) as caught:
        run(a.upsert_contact(UpsertContact(email="p9@acme.example"), ctx("upsert_contact")))
    assert caught.value.retry_after_s == 30.0
    CLOCK.now += 5                                          # the per-second window is long over, the penalty is not
    with pytest.raises(RateLimited):
        run(a.upsert_contact(UpsertContact(email="p9@acme.example"), ctx("upsert_contact")))
    CLOCK.now += 26
    assert run(a.upsert_contact(UpsertContact(email="p9@acme.example"), ctx("upsert_contact")))["created"]


def test_airtable_probe_and_auth(sandbox):
    run(airtable(sandbox).probe())
    with pytest.raises(AuthError, match="AUTHENTICATION_REQUIRED"):
        run(airtable(sandbox, token="wrong").upsert_contact(UpsertContact(email="a@acme.example"), ctx("upsert_contact")))


# --- HubSpot ----------------------------------------------------------------------

def test_hubspot_upsert_creates_then_updates_the_same_contact(sandbox):
    a = adapter(HubSpotAdapter, sandbox)
    first = run(a.upsert_contact(UpsertContact(email="Ann@Acme.example", first_name="Ann"), ctx("upsert_contact")))
    second = run(a.upsert_contact(UpsertContact(email="ann@acme.example", last_name="Lee",
                                                fields={"lifecyclestage": "lead"}), ctx("upsert_contact")))
    assert (first["created"], second["created"]) == (True, False) and first["record_id"] == second["record_id"]
    props = sandbox["hubspot"].by_email("ann@acme.example")["properties"]
    assert props["firstname"] == "Ann" and props["lastname"] == "Lee" and props["lifecyclestage"] == "lead"
    run(a.probe())


def test_hubspot_probe_passes_with_a_token_that_may_only_write_contacts(sandbox):
    sandbox["hubspot"].scopes = ("crm.objects.contacts.write",)
    try:
        a = adapter(HubSpotAdapter, sandbox)
        run(a.probe())
        run(a.upsert_contact(UpsertContact(email="wo@acme.example"), ctx("upsert_contact")))
        denied = httpx.get(sandbox.url("hubspot") + "/account-info/v3/details", headers={"Authorization": f"Bearer {KEY}"})
        assert denied.status_code == 403 and denied.json()["category"] == "MISSING_SCOPES"
    finally:
        sandbox["hubspot"].scopes = ("crm.objects.contacts.write", "crm.objects.contacts.read")


def test_hubspot_create_conflicts_on_an_existing_email(sandbox):
    a = adapter(HubSpotAdapter, sandbox)
    run(a.upsert_contact(UpsertContact(email="bob@globex.example"), ctx("upsert_contact")))
    answer = httpx.post(sandbox.url("hubspot") + "/crm/v3/objects/contacts", headers={"Authorization": f"Bearer {KEY}"},
                        json={"properties": {"email": "bob@globex.example"}})
    assert answer.status_code == 409 and answer.json()["category"] == "CONFLICT"
    assert "Existing ID: 101" in answer.json()["message"]


def _to_utc_midnight() -> float:
    return 86400 - time.time() % 86400


def test_hubspot_rate_limits_name_their_policy(sandbox):
    a = adapter(HubSpotAdapter, sandbox)
    sandbox["hubspot"].faults.update({"throttle_for_s": 60})
    with pytest.raises(RateLimited) as caught:
        run(a.upsert_contact(UpsertContact(email="c@acme.example"), ctx("upsert_contact")))
    assert caught.value.retry_after_s == 10.0 and "TEN_SECONDLY_ROLLING" in caught.value.message
    sandbox["hubspot"].throttle_policy = "DAILY"
    # The wait runs to the next UTC midnight, so it is bracketed by the wait
    # measured just before and just after the call: a fixed lower bound failed
    # when CI ran at 23:59:52.
    before = _to_utc_midnight()
    with pytest.raises(RateLimited) as caught:
        run(a.upsert_contact(UpsertContact(email="c@acme.example"), ctx("upsert_contact")))
    after = _to_utc_midnight()
    assert "DAILY" in caught.value.message
    assert min(before, after) - 1 <= caught.value.retry_after_s <= max(before, after) + 1
    sandbox["hubspot"].faults.update({"reject_auth": True})
    sandbox["hubspot"].faults.throttle_until = 0
    with pytest.raises(AuthError, match="INVALID_AUTHENTICATION"):
        run(a.upsert_contact(UpsertContact(email="c@acme.example"), ctx("upsert_contact")))
