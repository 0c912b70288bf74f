"""The lead_enrichment stand-ins (Apollo, Dropcontact) behave like their
providers, checked through the real adapters over loopback HTTP (no Ray).
Clocks are injected where time matters (tests/adapters/loopback.py)."""

from __future__ import annotations

import pytest

from actors.adapters.enrichment.apollo import ApolloAdapter
from actors.adapters.enrichment.dropcontact import DropcontactAdapter
from actors.errors import AttemptTimeout, AuthError, RateLimited
from actors.payloads import EnrichPerson, VerifyEmail
from actors.sandbox.apollo import ApolloStandIn
from actors.sandbox.base import SandboxRunner
from actors.sandbox.dropcontact import DropcontactStandIn, qualification
from tests.adapters.recorder import FakeClock, ctx
from tests.adapters.loopback import CLOCK, CREATED, KEY, adapter, fresh, no_wait, run  # noqa: F401 - fresh: an autouse fixture


@pytest.fixture(scope="module")
def sandbox():
    runner = SandboxRunner([
        ApolloStandIn(api_key=KEY, per_minute=3, clock=CLOCK),
        DropcontactStandIn(api_key=KEY, ready_after_polls=2, clock=CLOCK),
    ]).start()
    yield runner
    runner.stop()


# --- Apollo -------------------------------------------------------------------------

def test_apollo_finds_known_people_and_answers_null_for_others(sandbox):
    a = adapter(ApolloAdapter, sandbox)
    by_email = run(a.enrich_person(EnrichPerson(email="ann@acme.example"), ctx("enrich_person")))
    assert by_email["found"] and by_email["person"]["title"] == "VP Marketing" and by_email["person"]["company"] == "Acme"
    by_name = run(a.enrich_person(EnrichPerson(first_name="bob", last_name="MARTIN", domain="globex.example"),
                                  ctx("enrich_person")))
    assert by_name["person"]["email"] == "bob.martin@globex.example"
    assert run(a.enrich_person(EnrichPerson(email="stranger@acme.example"), ctx("enrich_person"))) == {
        "found": False, "person": None}
    # The stand-in allows 3 a minute here: the 4th is refused until the minute is over.
    with pytest.raises(RateLimited) as caught:
        run(a.enrich_person(EnrichPerson(email="ann@acme.example"), ctx("enrich_person")))
    assert "per minute" in caught.value.message and 0 < caught.value.retry_after_s <= 60


def test_apollo_probe_tells_a_bad_key(sandbox):
    run(adapter(ApolloAdapter, sandbox).probe())
    with pytest.raises(AuthError):
        run(adapter(ApolloAdapter, sandbox, api_key="wrong").probe())
    with pytest.raises(AuthError, match="Invalid access credentials"):
        run(adapter(ApolloAdapter, sandbox, api_key="wrong").enrich_person(EnrichPerson(email="ann@acme.example"),
                                                                            ctx("enrich_person")))


# --- Dropcontact -------------------------------------------------------------------

def dropcontact(sandbox, capability="email_verification", **settings):
    cls = DropcontactAdapter
    made = cls(cls.Settings.model_validate({"api_key": KEY, "base_url": sandbox.url("dropcontact"),
                                           "poll_interval_s": 0.01, **settings}),
               capability=capability, provider="dropcontact", sleep=no_wait)
    CREATED.append(made)
    return made


@pytest.mark.parametrize("address,status", [
    ("ann@acme.example", "valid"), ("catchall@acme.example", "risky"), ("info@acme.example", "risky"),
    ("invalid.person@acme.example", "invalid"), ("someone@mailinator.com", "invalid"),
    ("dnc.someone@acme.example", "invalid"), ("unknown.x@acme.example", "unknown"),
])
def test_dropcontact_verifies_after_polling(sandbox, address, status):
    value = run(dropcontact(sandbox).verify_email(VerifyEmail(email=address), ctx("verify_email")))
    assert value["status"] == status and value["qualification"] == qualification(address)
    polls = [r for r in sandbox["dropcontact"].received if r.method == "GET"]
    assert len(polls) == 3                    # two "not ready yet", then the result


def test_dropcontact_enriches_in_french_too(sandbox):
    a = dropcontact(sandbox, capability="lead_enrichment", language="fr")
    value = run(a.enrich_person(EnrichPerson(first_name="Chloe", last_name="Durand", domain="initech.example"),
                                ctx("enrich_person")))
    assert value["found"] and value["person"]["title"] == "CTO" and value["person"]["email_status"] == "nominatif@pro"
    assert value["person"]["linkedin_url"] == "https://www.linkedin.com/in/chloe-durand-initech"
    nobody = run(a.enrich_person(EnrichPerson(first_name="No", last_name="Body", domain="void.example"),
                                 ctx("enrich_person")))
    assert nobody["found"] is False


def test_dropcontact_deadline_names_the_pending_request(sandbox):
    clock = FakeClock()
    a = dropcontact(sandbox, poll_interval_s=0.05)
    a._sleep, a._clock = clock.sleep, clock         # polls at fake times: no waiting on the real clock
    sandbox["dropcontact"].ready_after_polls = 10**6
    try:
        with pytest.raises(AttemptTimeout) as caught:
            run(a.verify_email(VerifyEmail(email="ann@acme.example"), ctx("verify_email", timeout_s=0.3)))
    finally:
        sandbox["dropcontact"].ready_after_polls = 2
    (request_id,) = sandbox["dropcontact"].jobs
    assert request_id in caught.value.message
    assert len([r for r in sandbox["dropcontact"].received if r.method == "GET"]) == 6   # 0.27 s / 0.05 s


def test_dropcontact_credits(sandbox):
    stand_in = sandbox["dropcontact"]
    run(dropcontact(sandbox).probe())
    stand_in.credits = 0
    with pytest.raises(RateLimited, match="credits"):
        run(dropcontact(sandbox).verify_email(VerifyEmail(email="ann@acme.example"), ctx("verify_email")))
    with pytest.raises(RateLimited, match="no credits left"):
        run(dropcontact(sandbox).probe())
    with pytest.raises(AuthError):
        run(dropcontact(sandbox, api_key="wrong").verify_email(VerifyEmail(email="a@acme.example"), ctx("verify_email")))
