"""DropcontactAdapter with an injected transport and a fake clock: submit, poll,
the deadline, resuming a pending request, the qualification table, errors."""

from __future__ import annotations

import httpx
import pytest

from actors.adapters.enrichment.dropcontact import DropcontactAdapter, qualification_status
from actors.errors import (
    AttemptTimeout,
    AuthError,
    MalformedResponse,
    ProviderRejected,
    RateLimited,
    TransientError,
)
from actors.payloads import EnrichPerson, VerifyEmail
from tests.adapters.recorder import SECRET, FakeClock, Recorder, ctx, reply, run

SUBMITTED = reply(200, {"credits_left": 99, "request_id": "qzmxkpvlrtdnhwa", "error": False, "success": True})
NOT_READY = reply(200, {"error": False, "reason": "Request not ready yet, try again in 30 seconds", "success": False})


def ready(*records) -> httpx.Response:
    return reply(200, {"data": list(records), "error": False, "success": True, "credits_left": 99})


class Script:
    """Answers POSTs with `submit` and GETs with `polls`, in turn (the last one repeats)."""

    def __init__(self, polls, submit=SUBMITTED):
        self.polls, self.submit = polls, submit
        self.n = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return self.submit
        self.n += 1
        return self.polls[min(self.n, len(self.polls)) - 1]


def adapter(answer, capability="email_verification", **settings):
    rec = Recorder(answer)
    clock = FakeClock()
    cls = DropcontactAdapter
    a = cls(cls.Settings.model_validate({"api_key": SECRET, "poll_interval_s": 5.0, **settings}),
            capability=capability, provider="dropcontact", transport=rec.transport, sleep=clock.sleep, clock=clock)
    return a, rec, clock


def test_verify_submits_then_polls_until_ready():
    a, rec, clock = adapter(Script([NOT_READY, NOT_READY, ready(
        {"email": [{"email": "denis@co.example", "qualification": "nominative@pro"}]})]))
    value = run(a.verify_email(VerifyEmail(email="denis@co.example"), ctx("verify_email", timeout_s=60)))
    assert value == {"email": "denis@co.example", "status": "valid", "qualification": "nominative@pro",
                     "request_id": "qzmxkpvlrtdnhwa"}
    submit, *polls = rec.requests
    assert submit.method == "POST" and str(submit.url) == "https://api.dropcontact.com/v1/enrich/all"
    assert submit.headers["X-Access-Token"] == SECRET
    assert rec.body(0) == {"data": [{"email": "denis@co.example"}], "siren": False, "language": "en"}
    assert [p.url.path for p in polls] == ["/v1/enrich/all/qzmxkpvlrtdnhwa"] * 3
    assert clock.slept == [5.0, 5.0]            # between polls, never on the real clock


def test_the_deadline_gives_a_timeout_naming_the_request_id():
    a, rec, clock = adapter(Script([NOT_READY]))
    with pytest.raises(AttemptTimeout) as caught:
        run(a.verify_email(VerifyEmail(email="denis@co.example"), ctx("verify_email", timeout_s=12)))
    assert "qzmxkpvlrtdnhwa" in caught.value.message and caught.value.maybe_delivered
    # 12 s less a safety margin of 1 s: polls at 0, 5, 10 then the rest of the time, no more.
    assert sum(clock.slept) == pytest.approx(11.0) and clock.slept == [5.0, 5.0, pytest.approx(1.0)]
    assert len(rec.requests) == 1 + 3


def test_a_retry_with_the_same_idempotency_key_resumes_the_pending_request():
    script = Script([NOT_READY, NOT_READY, ready({"email": [{"email": "a@co.example", "qualification": "catch_all@pro"}]})])
    a, rec, _ = adapter(script)
    with pytest.raises(AttemptTimeout):
        run(a.verify_email(VerifyEmail(email="a@co.example"), ctx("verify_email", timeout_s=1, idempotency_key="k1")))
    value = run(a.verify_email(VerifyEmail(email="a@co.example"), ctx("verify_email", timeout_s=60, idempotency_key="k1")))
    assert value["status"] == "risky" and value["request_id"] == "qzmxkpvlrtdnhwa"
    assert [r.method for r in rec.requests].count("POST") == 1
    # Done: a third call with the key submits afresh.
    run(a.verify_email(VerifyEmail(email="a@co.example"), ctx("verify_email", timeout_s=60, idempotency_key="k1")))
    assert [r.method for r in rec.requests].count("POST") == 2


@pytest.mark.parametrize("qualification,status", [
    ("nominative@pro", "valid"), ("nominative@perso", "valid"), ("nominatif@pro", "valid"),
    ("nominative@school", "valid"), ("generic@pro", "risky"), ("generique@pro", "risky"),
    ("catch_all@pro", "risky"), ("random@pro", "risky"), ("invalid@pro", "invalid"), ("invalide@pro", "invalid"),
    ("Do_Not_Contact@pro", "invalid"), ("Ne_Pas_Contacter@pro", "invalid"), ("non_validated@pro", "unknown"),
    ("non_validé@pro", "unknown"), ("nominative@disposable", "invalid"), ("nominatif@jetable", "invalid"),
    ("nominative@invalid", "invalid"), ("nominatif@domaine invalide", "invalid"), ("brand_new@pro", "unknown"),
    ("", "unknown"), (None, "unknown"),
])
def test_qualification_table(qualification, status):
    assert qualification_status(qualification) == status


def test_an_address_missing_from_the_result_is_unknown():
    a, _, _ = adapter(Script([ready({"email": [{"email": "other@co.example", "qualification": "nominative@pro"}]})]))
    value = run(a.verify_email(VerifyEmail(email="mine@co.example"), ctx("verify_email")))
    assert value["status"] == "unknown" and value["qualification"] is None


def test_enrich_returns_company_linkedin_and_job():
    a, rec, _ = adapter(Script([ready({"first_name": "Denis", "last_name": "Cohen", "full_name": "Denis Cohen",
                                       "job": "CEO", "company": "Dropcontact", "linkedin": "www.linkedin.com/in/dc",
                                       "website": "www.dropcontact.com",
                                       "email": [{"email": "denis@dropcontact.com", "qualification": "nominative@pro"}]})]),
                        capability="lead_enrichment")
    value = run(a.enrich_person(EnrichPerson(first_name="Denis", last_name="Cohen", domain="dropcontact.com"),
                                ctx("enrich_person")))
    assert rec.body(0)["data"] == [{"first_name": "Denis", "last_name": "Cohen", "website": "dropcontact.com"}]
    person = value["person"]
    assert value["found"] is True
    assert {k: person[k] for k in ("name", "title", "company", "linkedin_url", "email", "email_status")} == {
        "name": "Denis Cohen", "title": "CEO", "company": "Dropcontact", "linkedin_url": "https://www.linkedin.com/in/dc",
        "email": "denis@dropcontact.com", "email_status": "nominative@pro"}


def test_enrich_with_nothing_found():
    a, _, _ = adapter(Script([ready({"first_name": "Nobody", "email": [{"email": "x@y.example",
                                                                        "qualification": "invalid@pro"}]})]),
                      capability="lead_enrichment")
    value = run(a.enrich_person(EnrichPerson(email="x@y.example"), ctx("enrich_person")))
    assert value["found"] is False and value["person"] is None


@pytest.mark.parametrize("answer,error,words", [
    (reply(401, {"error": True, "reason": "Missing or invalid API key", "success": False}), AuthError, "invalid API key"),
    (reply(403, {"error": True, "reason": "You don't have enough credits", "success": False}), RateLimited, "credits"),
    (reply(429, {"error": True, "reason": "Too Many Requests", "success": False}), RateLimited, "Too Many"),
    (reply(400, {"error": True, "reason": "Too many records, you can only submit up to 250 records",
                 "success": False}), ProviderRejected, "up to 250 records"),
    (reply(422, {"detail": [{"loc": ["body", "data"], "msg": "field required"}]}), ProviderRejected, "field required"),
    (reply(500, {"detail": "Internal Server Error"}), TransientError, "Internal Server Error"),
])
def test_errors_of_both_body_shapes(answer, error, words):
    a, _, _ = adapter(Script([NOT_READY], submit=answer))
    with pytest.raises(error) as caught:
        run(a.verify_email(VerifyEmail(email="a@co.example"), ctx("verify_email")))
    assert words in caught.value.message
    if error is RateLimited and caught.value.status == 403:
        assert caught.value.retry_after_s == 3600.0


def test_a_failure_while_polling_may_have_been_delivered():
    a, _, _ = adapter(Script([reply(503, {"detail": "down"})]))
    with pytest.raises(TransientError) as caught:
        run(a.verify_email(VerifyEmail(email="a@co.example"), ctx("verify_email")))
    assert caught.value.maybe_delivered


@pytest.mark.parametrize("submit,polls", [
    (reply(200, {"success": True, "error": False}), [NOT_READY]),                 # no request_id
    (reply(200, text="oops"), [NOT_READY]),
    (SUBMITTED, [reply(200, {"data": []})]),                                        # no success
    (SUBMITTED, [reply(200, {"success": True, "data": {"email": "x"}})]),
    (SUBMITTED, [reply(200, {"success": True, "data": [{"email": [{"qualification": "nominative@pro"}]}]})]),
    (SUBMITTED, [reply(200, {"success": True, "data": ["x"]})]),
])
def test_malformed_answers(submit, polls):
    a, _, _ = adapter(Script(polls, submit=submit))
    with pytest.raises(MalformedResponse):
        run(a.verify_email(VerifyEmail(email="a@co.example"), ctx("verify_email")))


def test_a_refused_submit_in_a_200_is_a_rejection():
    a, _, _ = adapter(Script([NOT_READY], submit=reply(200, {"error": True, "success": False, "reason": "bad data"})))
    with pytest.raises(ProviderRejected, match="bad data"):
        run(a.verify_email(VerifyEmail(email="a@co.example"), ctx("verify_email")))


def test_probe_reads_the_free_credits_endpoint():
    a, rec, _ = adapter(reply(200, {"credits": 120}))
    run(a.probe())
    assert rec.last.method == "GET" and rec.last.url.path == "/v1/account/credits"
    a, _, _ = adapter(reply(200, {"credits": 0}))
    with pytest.raises(RateLimited, match="no credits left"):
        run(a.probe())
    a, _, _ = adapter(reply(401, {"detail": "Missing or invalid API key"}))
    with pytest.raises(AuthError):
        run(a.probe())
