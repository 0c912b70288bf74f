"""ApolloAdapter with an injected transport: query inputs, found / not found, rate-limit windows."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from actors.adapters.enrichment.apollo import ApolloAdapter, apollo_retry_after, normalise_person
from actors.errors import AuthError, MalformedResponse, ProviderRejected, RateLimited, TransientError
from actors.payloads import EnrichPerson
from tests.adapters.recorder import SECRET, Recorder, ctx, make, reply, run

PERSON = {"id": "p1", "first_name": "Tim", "last_name": "Zheng", "name": "Tim Zheng", "title": "Founder & CEO",
          "linkedin_url": "http://www.linkedin.com/in/tim-zheng-677ba010", "email": "tim@apollo.io",
          "email_status": "verified", "organization": {"id": "o1", "name": "Apollo.io"},
          "employment_history": [{"current": True, "organization_name": "Apollo"}]}
BY_EMAIL = EnrichPerson(email="tim@apollo.io")


def adapter(answer, **settings):
    rec = Recorder(answer)
    return make(ApolloAdapter, rec.transport, **{"api_key": SECRET, **settings}), rec


def test_match_posts_inputs_as_query_parameters_with_the_key_header():
    a, rec = adapter(reply(200, {"person": PERSON}))
    value = run(a.enrich_person(BY_EMAIL, ctx("enrich_person")))
    request = rec.last
    assert request.method == "POST" and request.url.path == "/api/v1/people/match"
    assert dict(request.url.params) == {"email": "tim@apollo.io", "reveal_personal_emails": "false",
                                        "reveal_phone_number": "false"}
    assert request.headers["X-Api-Key"] == SECRET and request.headers["Cache-Control"] == "no-cache"
    assert value["found"] is True
    person = value["person"]
    assert {k: person[k] for k in ("name", "title", "company", "linkedin_url", "email", "email_status")} == {
        "name": "Tim Zheng", "title": "Founder & CEO", "company": "Apollo.io",
        "linkedin_url": "http://www.linkedin.com/in/tim-zheng-677ba010", "email": "tim@apollo.io",
        "email_status": "verified"}
    assert person["raw"] == PERSON


def test_nobody_matched_is_an_answer_not_a_failure():
    a, _ = adapter(reply(200, {"person": None}))
    assert run(a.enrich_person(BY_EMAIL, ctx("enrich_person"))) == {"found": False, "person": None}


def test_name_and_domain_can_go_in_a_json_body():
    a, rec = adapter(reply(200, {"person": None}), params_in="body", reveal_personal_emails=True)
    run(a.enrich_person(EnrichPerson(first_name="Tim", last_name="Zheng", domain="apollo.io"), ctx("enrich_person")))
    assert not rec.last.url.params
    assert rec.body() == {"first_name": "Tim", "last_name": "Zheng", "domain": "apollo.io",
                          "reveal_personal_emails": True, "reveal_phone_number": False}


def test_company_falls_back_to_the_current_job():
    person = {**PERSON, "organization": None}
    assert normalise_person(person)["company"] == "Apollo"
    assert normalise_person({"first_name": "A", "last_name": "B"})["name"] == "A B"


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures(status):
    a, _ = adapter(reply(status, {"error": "Invalid access credentials."}))
    with pytest.raises(AuthError, match="Invalid access credentials"):
        run(a.enrich_person(BY_EMAIL, ctx("enrich_person")))


def test_422_is_a_rejection_with_apollos_message():
    a, _ = adapter(reply(422, {"error": "Provide at least one parameter"}))
    with pytest.raises(ProviderRejected, match="Provide at least one parameter"):
        run(a.enrich_person(BY_EMAIL, ctx("enrich_person")))


def test_429_waits_for_the_used_up_window():
    a, _ = adapter(reply(429, {"message": "The maximum number of api calls allowed for api/v1/people/match is "
                                          "50 times per minute."},
                         headers={"x-minute-requests-left": "0", "x-hourly-requests-left": "150"}))
    with pytest.raises(RateLimited) as caught:
        run(a.enrich_person(BY_EMAIL, ctx("enrich_person")))
    assert 0 < caught.value.retry_after_s <= 60


def test_retry_after_assumes_clock_aligned_windows():
    now = dt.datetime(2024, 3, 5, 22, 15, 40, tzinfo=dt.timezone.utc).timestamp()
    h = httpx.Headers
    assert apollo_retry_after(h({"x-minute-requests-left": "0"}), "", now) == 20.0
    assert apollo_retry_after(h({"x-minute-requests-left": "0", "x-hourly-requests-left": "0"}), "", now) == 44 * 60 + 20
    assert apollo_retry_after(h({"x-daily-requests-left": "0", "x-minute-requests-left": "0"}), "", now) == 1 * 3600 + 44 * 60 + 20
    assert apollo_retry_after(h({"x-24-hour-requests-left": "0"}), "", now) == 1 * 3600 + 44 * 60 + 20
    assert apollo_retry_after(h({"Retry-After": "7", "x-minute-requests-left": "0"}), "", now) == 7.0
    assert apollo_retry_after(h({}), "... is 600 times per hour. Please upgrade", now) == 44 * 60 + 20
    assert apollo_retry_after(h({"x-minute-requests-left": "12"}), "", now) is None


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(status):
    a, _ = adapter(reply(status, {"error": "boom"}))
    with pytest.raises(TransientError):
        run(a.enrich_person(BY_EMAIL, ctx("enrich_person")))


@pytest.mark.parametrize("answer", [
    reply(200, text="<html>"),
    reply(200, {"people": []}),
    reply(200, {"person": ["x"]}),
    reply(200, {"person": {**PERSON, "title": 42}}),
])
def test_malformed_answers(answer):
    a, _ = adapter(answer)
    with pytest.raises(MalformedResponse):
        run(a.enrich_person(BY_EMAIL, ctx("enrich_person")))


def test_probe_asks_auth_health():
    a, rec = adapter(reply(200, {"healthy": True, "is_logged_in": True}))
    run(a.probe())
    assert rec.last.method == "GET" and rec.last.url.path == "/api/v1/auth/health"
    a, _ = adapter(reply(200, {"healthy": True, "is_logged_in": False}))
    with pytest.raises(AuthError, match="does not log in"):
        run(a.probe())
    a, _ = adapter(reply(200, {"healthy": False, "is_logged_in": True}))
    with pytest.raises(TransientError):
        run(a.probe())
    a, _ = adapter(reply(200, {"ok": 1}))
    with pytest.raises(MalformedResponse):
        run(a.probe())
