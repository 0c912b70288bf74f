"""AirtableAdapter with an injected transport: request shape, values, every error kind."""

from __future__ import annotations

import httpx
import pytest

from actors.adapters.crm.airtable import MAX_RECORDS_PER_REQUEST, AirtableAdapter, chunks
from actors.errors import AuthError, MalformedResponse, ProviderRejected, RateLimited, TransientError
from actors.payloads import UpsertContact
from tests.adapters.recorder import SECRET, Recorder, ctx, make, reply, run

SETTINGS = {"token": SECRET, "base_id": "appBASE123", "table": "tblContacts"}
ANN = UpsertContact(email="ann@acme.example", first_name="Ann", last_name="Lee", company="Acme",
                    fields={"Stage": "Lead", "Score": 7})


def upserted(created: bool, record_id: str = "recAAA") -> httpx.Response:
    return reply(200, {"records": [{"id": record_id, "createdTime": "2024-01-01T00:00:00.000Z",
                                    "fields": {"Email": "ann@acme.example"}}],
                       "createdRecords": [record_id] if created else [],
                       "updatedRecords": [] if created else [record_id]})


def adapter(answer, **settings):
    rec = Recorder(answer)
    return make(AirtableAdapter, rec.transport, **{**SETTINGS, **settings}), rec


def test_upsert_sends_a_patch_merged_on_the_email_field_and_reads_created():
    a, rec = adapter(upserted(created=True))
    value = run(a.upsert_contact(ANN, ctx("upsert_contact")))
    assert value["record_id"] == "recAAA" and value["created"] is True
    request = rec.last
    assert request.method == "PATCH"
    assert request.url == "https://api.airtable.com/v0/appBASE123/tblContacts"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert rec.body() == {
        "performUpsert": {"fieldsToMergeOn": ["Email"]},
        "records": [{"fields": {"Stage": "Lead", "Score": 7, "Email": "ann@acme.example", "First Name": "Ann",
                                "Last Name": "Lee", "Company": "Acme"}}],
        "typecast": False,
    }


def test_an_existing_record_is_updated_not_created():
    a, _ = adapter(upserted(created=False, record_id="recOLD"))
    assert run(a.upsert_contact(ANN, ctx("upsert_contact"))) == {
        "record_id": "recOLD", "created": False, "fields": {"Email": "ann@acme.example"}}


def test_field_names_are_configurable_and_missing_values_are_left_out():
    a, rec = adapter(upserted(True), email_field="E-mail", first_name_field="Prénom", typecast=True,
                     table="Leads & Contacts")
    run(a.upsert_contact(UpsertContact(email="ann@acme.example", first_name="Ann"), ctx("upsert_contact")))
    body = rec.body()
    assert body["performUpsert"] == {"fieldsToMergeOn": ["E-mail"]} and body["typecast"] is True
    assert body["records"] == [{"fields": {"E-mail": "ann@acme.example", "Prénom": "Ann"}}]
    assert rec.last.url.raw_path == b"/v0/appBASE123/Leads%20%26%20Contacts"


@pytest.mark.parametrize("status,body", [
    (401, {"error": {"type": "AUTHENTICATION_REQUIRED", "message": "Authentication required"}}),
    (403, {"error": {"type": "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", "message": "Invalid permissions"}}),
    (404, {"error": "NOT_FOUND"}),
])
def test_auth_and_missing_base_are_auth_errors(status, body):
    a, _ = adapter(reply(status, body))
    with pytest.raises(AuthError) as caught:
        run(a.upsert_contact(ANN, ctx("upsert_contact")))
    assert caught.value.status == status and str(body["error"] if status == 404 else body["error"]["type"]) in caught.value.message


def test_429_waits_airtables_30_seconds():
    a, _ = adapter(reply(429, {"error": {"type": "RATE_LIMIT_REACHED",
                                         "message": "Rate limit exceeded. Please try again later"}}))
    with pytest.raises(RateLimited) as caught:
        run(a.upsert_contact(ANN, ctx("upsert_contact")))
    assert caught.value.retry_after_s == 30.0 and "Rate limit exceeded" in caught.value.message


def test_422_carries_airtables_type_and_message():
    a, _ = adapter(reply(422, {"error": {"type": "UNKNOWN_FIELD_NAME", "message": 'Unknown field name: "Stage"'}}))
    with pytest.raises(ProviderRejected) as caught:
        run(a.upsert_contact(ANN, ctx("upsert_contact")))
    assert "UNKNOWN_FIELD_NAME" in caught.value.message and 'Unknown field name: "Stage"' in caught.value.message


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status):
    a, _ = adapter(reply(status, {"error": {"type": "SERVER_ERROR", "message": "oops"}}))
    with pytest.raises(TransientError) as caught:
        run(a.upsert_contact(ANN, ctx("upsert_contact")))
    assert caught.value.status == status and not caught.value.maybe_delivered


@pytest.mark.parametrize("answer", [
    reply(200, text="<html>gateway</html>"),
    reply(200, {"records": []}),
    reply(200, {"records": [{"id": "recA"}]}),                                    # no createdRecords
    reply(200, {"records": {"id": "recA"}, "createdRecords": [], "updatedRecords": []}),
    reply(200, {"records": [{"fields": {}}], "createdRecords": [], "updatedRecords": []}),
    reply(200, ["not", "an", "object"]),
])
def test_malformed_answers_are_reported_not_crashed_on(answer):
    a, _ = adapter(answer)
    with pytest.raises(MalformedResponse):
        run(a.upsert_contact(ANN, ctx("upsert_contact")))


def test_batches_go_in_requests_of_at_most_ten():
    assert [len(c) for c in chunks(list(range(23)))] == [10, 10, 3]
    assert list(chunks([])) == []

    def answer(request: httpx.Request) -> httpx.Response:
        import json

        n = len(json.loads(request.content)["records"])
        ids = [f"rec{len(rec.requests)}-{i}" for i in range(n)]
        return reply(200, {"records": [{"id": i, "fields": {}} for i in ids], "createdRecords": ids, "updatedRecords": []})

    a, rec = adapter(answer)
    contacts = [UpsertContact(email=f"p{i}@acme.example") for i in range(23)]
    values = run(a.upsert_many(contacts, ctx("upsert_contact")))
    assert [len(rec.body(i)["records"]) for i in range(3)] == [10, 10, 3]
    assert len(values) == 23 and values[0]["record_id"] == "rec1-0" and values[22]["record_id"] == "rec3-2"
    with pytest.raises(ValueError):
        a.request_body([ANN] * (MAX_RECORDS_PER_REQUEST + 1))


def test_probe_calls_whoami_and_wants_the_write_scope():
    a, rec = adapter(reply(200, {"id": "usrX", "scopes": ["data.records:read", "data.records:write"]}))
    run(a.probe())
    assert rec.last.method == "GET" and rec.last.url.path == "/v0/meta/whoami"
    a, _ = adapter(reply(200, {"id": "usrX", "scopes": ["data.records:read"]}))
    with pytest.raises(AuthError, match="data.records:write"):
        run(a.probe())
    a, _ = adapter(reply(200, {"id": "usrX"}))            # no scopes listed: nothing to check
    run(a.probe())
    a, _ = adapter(reply(401, {"error": {"type": "AUTHENTICATION_REQUIRED", "message": "no"}}))
    with pytest.raises(AuthError):
        run(a.probe())
