"""The stand-ins behave like their providers, checked through the real adapters
over loopback HTTP (no Ray). Clocks are injected where time matters."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from actors.adapters.crm.airtable import AirtableAdapter
from actors.adapters.crm.hubspot import HubSpotAdapter
from actors.adapters.enrichment.apollo import ApolloAdapter
from actors.adapters.enrichment.dropcontact import DropcontactAdapter
from actors.adapters.verification.neverbounce import NeverBounceAdapter
from actors.adapters.verification.zerobounce import ZeroBounceAdapter
from actors.errors import AttemptTimeout, AuthError, ProviderRejected, RateLimited, TransientError
from actors.payloads import EnrichPerson, UpsertContact, VerifyEmail
from actors.sandbox.airtable import AirtableStandIn
from actors.sandbox.apollo import ApolloStandIn
from actors.sandbox.base import Faults, SandboxRunner
from actors.sandbox.contacts import classify
from actors.sandbox.dropcontact import DropcontactStandIn, qualification
from actors.sandbox.hubspot import HubSpotStandIn
from actors.sandbox.neverbounce import NeverBounceStandIn
from actors.sandbox.zerobounce import ZeroBounceStandIn
from tests.adapters.crm_enrich_verify.helpers import FakeClock, ctx, make

KEY = "stand-in-key-123"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


CLOCK = Clock()
CREATED: list[Any] = []     # adapters made here: their clients are closed at the end of each run()


def run(coro: Any) -> Any:
    """Each run has its own event loop, so the adapters' connections are closed before it ends."""
    async def main() -> Any:
        try:
            return await coro
        finally:
            for a in CREATED:
                await a.close()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def sandbox():
    runner = SandboxRunner([
        AirtableStandIn(api_key=KEY, requests_per_s=3, penalty_s=30, clock=CLOCK),
        HubSpotStandIn(api_key=KEY, requests_per_10s=50, clock=CLOCK),
        ApolloStandIn(api_key=KEY, per_minute=3, clock=CLOCK),
        DropcontactStandIn(api_key=KEY, ready_after_polls=2, clock=CLOCK),
        ZeroBounceStandIn(api_key=KEY, clock=CLOCK),
        NeverBounceStandIn(api_key=KEY, clock=CLOCK),
    ]).start()
    yield runner
    runner.stop()


@pytest.fixture(autouse=True)
def fresh(sandbox):
    for stand_in in sandbox.stand_ins.values():
        stand_in.faults = Faults()
        stand_in.received.clear()
        stand_in.reset()
    CLOCK.now += 86400          # a new day: every window and penalty is over
    yield
    CREATED.clear()


def adapter(cls: type, sandbox: SandboxRunner, capability: str | None = None, **settings: Any) -> Any:
    secret = {"token": KEY} if cls in (AirtableAdapter, HubSpotAdapter) else {"api_key": KEY}
    made = make(cls, None, capability=capability, base_url=sandbox.url(cls.name), **{**secret, **settings})
    CREATED.append(made)
    return made


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


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


# --- the verifiers -----------------------------------------------------------------

@pytest.mark.parametrize("address,zb,nb", [
    ("ann@acme.example", "valid", "valid"), ("catchall@acme.example", "risky", "risky"),
    ("spamtrap1@acme.example", "invalid", "invalid"), ("abuse@acme.example", "risky", "valid"),
    ("info@acme.example", "risky", "valid"), ("x@mailinator.com", "invalid", "invalid"),
    ("bounce@acme.example", "invalid", "invalid"), ("unknown@acme.example", "unknown", "unknown"),
])
def test_verifiers_classify_deterministically(sandbox, address, zb, nb):
    z = run(adapter(ZeroBounceAdapter, sandbox).verify_email(VerifyEmail(email=address), ctx("verify_email")))
    n = run(adapter(NeverBounceAdapter, sandbox).verify_email(VerifyEmail(email=address), ctx("verify_email")))
    assert (z["status"], n["status"]) == (zb, nb)
    if classify(address) == "role":
        assert z["sub_status"] == "role_based" and "role_account" in n["flags"]


def test_zerobounce_errors_come_inside_200s(sandbox):
    wrong = adapter(ZeroBounceAdapter, sandbox, api_key="wrong-key-77")
    with pytest.raises(AuthError, match="Invalid API key"):
        run(wrong.verify_email(VerifyEmail(email="ann@acme.example"), ctx("verify_email")))
    with pytest.raises(AuthError, match="not valid"):
        run(wrong.probe())
    assert all(r.status == 200 for r in sandbox["zerobounce"].received)
    sandbox["zerobounce"].faults.update({"throttle_for_s": 60})
    with pytest.raises(RateLimited) as caught:
        run(adapter(ZeroBounceAdapter, sandbox).verify_email(VerifyEmail(email="a@acme.example"), ctx("verify_email")))
    assert caught.value.retry_after_s == 60.0


def test_neverbounce_errors_come_inside_200s(sandbox):
    stand_in = sandbox["neverbounce"]
    wrong = adapter(NeverBounceAdapter, sandbox, api_key="wrong-key-77")
    with pytest.raises(AuthError) as caught:
        run(wrong.call("verify_email", VerifyEmail(email="a@acme.example"), ctx("verify_email")))
    assert "wrong-key-77" not in caught.value.message and "auth_failure" in caught.value.message
    good = adapter(NeverBounceAdapter, sandbox)
    stand_in.faults.update({"throttle_for_s": 60})
    with pytest.raises(RateLimited, match="throttle_triggered"):
        run(good.verify_email(VerifyEmail(email="a@acme.example"), ctx("verify_email")))
    stand_in.faults = Faults(down=True)
    with pytest.raises(TransientError, match="temp_unavail"):
        run(good.verify_email(VerifyEmail(email="a@acme.example"), ctx("verify_email")))
    stand_in.faults = Faults()
    stand_in.referrer_locked = True
    with pytest.raises(AuthError, match="bad_referrer"):
        run(good.verify_email(VerifyEmail(email="a@acme.example"), ctx("verify_email")))
    assert all(r.status == 200 for r in stand_in.received)
    stand_in.referrer_locked = False
    run(good.probe())


# --- live balances (actors/provider/spending.py reads them) --------------------------

def test_verifiers_read_their_live_balance_from_the_stand_ins(sandbox):
    zb, nb = sandbox["zerobounce"], sandbox["neverbounce"]
    zb.credits, nb.credits = 12, 7
    assert run(adapter(ZeroBounceAdapter, sandbox).balance()) == 12.0
    assert run(adapter(NeverBounceAdapter, sandbox).balance()) == 7.0
    run(adapter(ZeroBounceAdapter, sandbox).verify_email(VerifyEmail(email="ann@acme.example"), ctx("verify_email")))
    assert run(adapter(ZeroBounceAdapter, sandbox).balance()) == 11.0  # a validation spent a credit
    zb.credits = 0  # no credits: a balance of zero (the probe calls it a throttle; the balance just says 0)
    assert run(adapter(ZeroBounceAdapter, sandbox).balance()) == 0.0
    with pytest.raises(RateLimited):
        run(adapter(ZeroBounceAdapter, sandbox).probe())
    with pytest.raises(AuthError):
        run(adapter(ZeroBounceAdapter, sandbox, api_key="wrong-key-77").balance())
    with pytest.raises(AuthError):
        run(adapter(NeverBounceAdapter, sandbox, api_key="wrong-key-77").balance())


def test_a_verifier_whose_balance_is_near_zero_is_treated_as_spent(sandbox, tmp_path):
    """The provider actor's logic (no Ray) over the ZeroBounce stand-in: a
    balance at or below `near_zero` is a spent quota, back once a reading shows more."""
    from actors.config import parse_config
    from actors.durable.sqlite import SqliteStore
    from actors.provider.core import ProviderCore
    from actors.specs import build_spec

    cfg = parse_config({"state": {"url": str(tmp_path)}, "capabilities": {"email_verification": {"providers": [
        {"name": "zb", "adapter": "zerobounce", "settings": {"api_key": KEY, "base_url": sandbox.url("zerobounce")},
         "balance": {"near_zero": 10}}]}}}, "<test>", env={})
    [spec] = build_spec(cfg).capabilities[0].providers
    store = SqliteStore(str(tmp_path / "s.db"))
    zb = sandbox["zerobounce"]

    async def scenario() -> list:
        core = ProviderCore(spec, store=store, clock=CLOCK)
        CREATED.append(core.adapter)
        flips = []
        core.spending.on_flip, core.spending.status_of = flips.append, core.status
        zb.credits = 12
        await core.spending.read_balance()
        assert core.status().balance_left == 12.0 and core.status().quota_exhausted is None
        for i in range(2):  # 12 - 2 calls = 10 left: near zero
            reply = await core.call("verify_email", VerifyEmail(email=f"a{i}@acme.example"), ctx("verify_email"))
            assert reply.ok
        assert core.status().quota_exhausted == "balance" and reply.quota_exhausted == "balance"
        assert core.health.total_failures == 0  # a spent balance is not a failure
        zb.credits = 500  # someone bought credits
        await core.spending.read_balance()
        assert core.status().quota_exhausted is None and core.status().balance_left == 500.0
        await core.spending.close()
        [row] = await store.spend_get("email_verification")
        assert (row.balance_remaining, row.lifetime_calls, row.balance_calls_at) == (500.0, 2, 2)
        await store.close()
        return [s.quota_exhausted for s in flips]

    assert run(scenario()) == ["balance", None]
