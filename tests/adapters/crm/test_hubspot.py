"""HubSpotAdapter with an injected transport: batch upsert by email, errors and 429 waits."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from pydantic import ValidationError

from actors.adapters.crm.hubspot import HubSpotAdapter, HubSpotSettings, hubspot_retry_after
from actors.errors import AuthError, MalformedResponse, ProviderRejected, RateLimited, TransientError
from actors.payloads import UpsertContact
from tests.adapters.recorder import SECRET, Recorder, ctx, make, reply, run

ANN = UpsertContact(email="ann@acme.example", first_name="Ann", last_name="Lee", company="Acme",
                    fields={"lifecyclestage": "lead", "hs_lead_score": 7, "newsletter": True})


def result(new: bool, record_id: str = "101") -> httpx.Response:
    return reply(200, {"status": "COMPLETE", "results": [{"id": record_id, "new": new, "properties": {
        "email": "ann@acme.example"}, "createdAt": "x", "updatedAt": "y", "archived": False}],
        "startedAt": "x", "completedAt": "y"})


def adapter(answer, **settings):
    rec = Recorder(answer)
    return make(HubSpotAdapter, rec.transport, **{"token": SECRET, **settings}), rec


def test_upsert_posts_one_input_by_email_with_mapped_properties():
    a, rec = adapter(result(new=True))
    value = run(a.upsert_contact(ANN, ctx("upsert_contact")))
    assert value["record_id"] == "101" and value["created"] is True
    assert rec.last.method == "POST"
    assert str(rec.last.url) == "https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert"
    assert rec.last.headers["Authorization"] == f"Bearer {SECRET}"
    assert rec.body() == {"inputs": [{"idProperty": "email", "id": "ann@acme.example", "properties": {
        "lifecyclestage": "lead", "hs_lead_score": "7", "newsletter": "true",
        "firstname": "Ann", "lastname": "Lee", "company": "Acme"}}]}


def test_an_existing_contact_is_reported_as_updated():
    a, _ = adapter(result(new=False, record_id="555"))
    value = run(a.upsert_contact(ANN, ctx("upsert_contact")))
    assert (value["record_id"], value["created"]) == ("555", False)


def test_a_field_that_is_not_text_number_or_bool_is_refused_before_sending():
    a, rec = adapter(result(True))
    with pytest.raises(ProviderRejected, match="tags"):
        run(a.upsert_contact(UpsertContact(email="ann@acme.example", fields={"tags": ["a"]}), ctx("upsert_contact")))
    assert rec.requests == []


@pytest.mark.parametrize("status,category", [(401, "INVALID_AUTHENTICATION"), (403, "MISSING_SCOPES")])
def test_auth_failures(status, category):
    a, _ = adapter(reply(status, {"status": "error", "message": "nope", "correlationId": "c", "category": category}))
    with pytest.raises(AuthError) as caught:
        run(a.upsert_contact(ANN, ctx("upsert_contact")))
    assert category in caught.value.message and caught.value.status == status


def test_409_conflict_and_400_validation_are_rejections_with_hubspots_words():
    a, _ = adapter(reply(409, {"status": "error", "message": "Contact already exists. Existing ID: 123",
                               "correlationId": "c", "category": "CONFLICT"}))
    with pytest.raises(ProviderRejected, match="Existing ID: 123"):
        run(a.upsert_contact(ANN, ctx("upsert_contact")))
    a, _ = adapter(reply(400, {"status": "error", "message": 'Property "x" does not exist',
                               "correlationId": "c", "category": "VALIDATION_ERROR"}))
    with pytest.raises(ProviderRejected, match='VALIDATION_ERROR: Property "x" does not exist'):
        run(a.upsert_contact(ANN, ctx("upsert_contact")))


def test_a_multi_status_with_only_errors_is_a_rejection():
    a, _ = adapter(reply(207, {"status": "COMPLETE", "results": [], "numErrors": 1,
                               "errors": [{"status": "error", "category": "VALIDATION_ERROR",
                                           "message": "Email address ann@ is invalid"}]}))
    with pytest.raises(ProviderRejected, match="Email address ann@ is invalid"):
        run(a.upsert_contact(ANN, ctx("upsert_contact")))


def test_429_burst_policy_waits_the_interval():
    a, _ = adapter(reply(429, {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                               "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"},
                         headers={"X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                                  "X-HubSpot-RateLimit-Remaining": "0"}))
    with pytest.raises(RateLimited) as caught:
        run(a.upsert_contact(ANN, ctx("upsert_contact")))
    assert caught.value.retry_after_s == 10.0 and "TEN_SECONDLY_ROLLING" in caught.value.message


def test_retry_after_rules():
    now = dt.datetime(2024, 3, 5, 22, 0, 0, tzinfo=dt.timezone.utc).timestamp()
    headers = httpx.Headers
    assert hubspot_retry_after(headers({"Retry-After": "3"}), {"policyName": "DAILY"}, now) == 3.0
    assert hubspot_retry_after(headers({}), {"policyName": "DAILY"}, now) == 2 * 3600
    # The daily limit resets at midnight in the account's zone: 22:00 UTC is 17:00 in New York.
    assert hubspot_retry_after(headers({}), {"policyName": "DAILY"}, now, "America/New_York") == 7 * 3600
    assert hubspot_retry_after(headers({}), {"policyName": "SECONDLY"}, now) == 1.0
    assert hubspot_retry_after(headers({"X-HubSpot-RateLimit-Interval-Milliseconds": "1000"}),
                               {"policyName": "TEN_SECONDLY_ROLLING"}, now) == 1.0
    assert hubspot_retry_after(headers({"X-HubSpot-RateLimit-Daily-Remaining": "0"}), None, now) == 2 * 3600
    assert hubspot_retry_after(headers({"X-HubSpot-RateLimit-Remaining": "0"}), None, now) == 10.0
    assert hubspot_retry_after(headers({}), None, now) is None


def test_the_time_zone_setting_is_checked():
    with pytest.raises(ValidationError, match="unknown time zone"):
        HubSpotSettings(token="t", daily_reset_timezone="Mars/Olympus")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status):
    a, _ = adapter(reply(status, {"status": "error", "message": "internal", "category": "INTERNAL_ERROR"}))
    with pytest.raises(TransientError):
        run(a.upsert_contact(ANN, ctx("upsert_contact")))


@pytest.mark.parametrize("answer", [
    reply(200, text="not json"),
    reply(200, {"status": "COMPLETE"}),
    reply(200, {"results": [{"id": "1", "new": "yes"}]}),
    reply(200, {"results": [{"new": True}]}),
    reply(200, {"results": ["101"]}),
])
def test_malformed_answers(answer):
    a, _ = adapter(answer)
    with pytest.raises(MalformedResponse):
        run(a.upsert_contact(ANN, ctx("upsert_contact")))


def hubspot_by_scope(scopes):
    """HubSpot as its docs describe it: the token-info call needs no scope,
    account details need `oauth`, a contacts list needs contacts.read."""
    needs = {"/account-info/v3/details": "oauth", "/crm/v3/objects/contacts": "crm.objects.contacts.read"}

    def answer(request):
        if request.url.path == "/oauth/v2/private-apps/get/access-token-info":
            return reply(200, {"userId": 1, "hubId": 42, "appId": 7, "scopes": list(scopes)})
        if needs.get(request.url.path) not in scopes:
            return reply(403, {"status": "error", "message": "missing scopes", "correlationId": "c",
                               "category": "MISSING_SCOPES"})
        return reply(200, {"portalId": 42, "results": []})
    return answer


def test_probe_passes_with_a_private_app_token_that_may_only_write_contacts():
    a, rec = adapter(hubspot_by_scope(["crm.objects.contacts.write"]))
    run(a.probe())
    assert rec.last.method == "POST" and rec.last.url.path == "/oauth/v2/private-apps/get/access-token-info"
    assert rec.body() == {"tokenKey": SECRET}


def test_probe_fails_as_auth_when_the_token_cannot_write_contacts_or_is_unknown():
    a, _ = adapter(hubspot_by_scope(["crm.objects.contacts.read"]))
    with pytest.raises(AuthError, match="crm.objects.contacts.write"):
        run(a.probe())
    a, _ = adapter(reply(400, {"status": "error", "message": "Token not found", "correlationId": "c",
                               "category": "VALIDATION_ERROR"}))
    with pytest.raises(AuthError, match="probe_path") as caught:
        run(a.probe())
    assert SECRET not in caught.value.message


def test_probe_gets_the_configured_free_endpoint():
    a, rec = adapter(hubspot_by_scope(["crm.objects.contacts.read"]), probe_path="/crm/v3/objects/contacts?limit=1")
    run(a.probe())
    assert rec.last.url.path == "/crm/v3/objects/contacts" and rec.last.url.params["limit"] == "1"
    a, _ = adapter(reply(401, {"status": "error", "message": "expired", "category": "INVALID_AUTHENTICATION"}))
    with pytest.raises(AuthError):
        run(a.probe())
