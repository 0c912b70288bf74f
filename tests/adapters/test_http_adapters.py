"""What the six HTTP adapters of crm_sync, lead_enrichment and
email_verification share: dry runs send nothing, transport failures map to
kinds, secrets stay out of errors, one client reused and closed, defaults
point at the real providers, httpx is imported only when used."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from actors.adapters.crm.airtable import AirtableAdapter
from actors.adapters.crm.hubspot import HubSpotAdapter
from actors.adapters.enrichment.apollo import ApolloAdapter
from actors.adapters.enrichment.dropcontact import DropcontactAdapter
from actors.adapters.registry import get_adapter_class
from actors.adapters.verification.neverbounce import NeverBounceAdapter
from actors.adapters.verification.zerobounce import ZeroBounceAdapter
from actors.errors import AttemptTimeout, ProviderError, TransientError
from actors.payloads import EnrichPerson, UpsertContact, VerifyEmail
from tests.adapters.recorder import SECRET, Recorder, ctx, make, reply, run

CASES = [
    (AirtableAdapter, "upsert_contact", UpsertContact(email="ann@acme.example", first_name="Ann"),
     {"token": SECRET, "base_id": "appX", "table": "tblY"}, "https://api.airtable.com"),
    (HubSpotAdapter, "upsert_contact", UpsertContact(email="ann@acme.example", first_name="Ann"),
     {"token": SECRET}, "https://api.hubapi.com"),
    (ApolloAdapter, "enrich_person", EnrichPerson(email="ann@acme.example"), {"api_key": SECRET},
     "https://api.apollo.io"),
    (DropcontactAdapter, "verify_email", VerifyEmail(email="ann@acme.example"), {"api_key": SECRET},
     "https://api.dropcontact.com"),
    (DropcontactAdapter, "enrich_person", EnrichPerson(email="ann@acme.example"), {"api_key": SECRET},
     "https://api.dropcontact.com"),
    (ZeroBounceAdapter, "verify_email", VerifyEmail(email="ann@acme.example"), {"api_key": SECRET},
     "https://api.zerobounce.net"),
    (NeverBounceAdapter, "verify_email", VerifyEmail(email="ann@acme.example"), {"api_key": SECRET},
     "https://api.neverbounce.com"),
]
IDS = [f"{c[0].name}-{c[1]}" for c in CASES]
CAPABILITY = {"upsert_contact": "crm_sync", "enrich_person": "lead_enrichment", "verify_email": "email_verification"}


def build(case, answer):
    cls, method, payload, settings, _ = case
    rec = Recorder(answer)
    return make(cls, rec.transport, capability=CAPABILITY[method], **settings), rec, method, payload


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dry_run_sends_nothing_and_shows_the_request_without_secrets(case):
    a, rec, method, payload = build(case, reply(500))
    value = run(a.call(method, payload, ctx(method, dry_run=True)))
    assert rec.requests == []
    assert value["dry_run"] is True and value["delivered"] is False and value["provider"] == a.provider
    would = value["would_send"]
    assert would["url"].startswith(case[4]) and would["method"] in ("GET", "POST", "PATCH")
    assert SECRET not in repr(value) and "***" in repr(value)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_transport_failures_map_to_kinds(case):
    a, _, method, payload = build(case, httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(TransientError) as caught:
        run(a.call(method, payload, ctx(method)))
    assert not caught.value.maybe_delivered
    a, _, method, payload = build(case, httpx.ReadTimeout("timed out"))
    with pytest.raises(AttemptTimeout) as caught:
        run(a.call(method, payload, ctx(method)))
    assert caught.value.maybe_delivered       # the request was written: it may have acted
    a, _, method, payload = build(case, httpx.ConnectTimeout("timed out"))
    with pytest.raises(AttemptTimeout) as caught:
        run(a.call(method, payload, ctx(method)))
    if case[0] is not DropcontactAdapter:     # Dropcontact's submit never left, but it says "maybe" after polling
        assert not caught.value.maybe_delivered


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("status", [400, 401, 429, 500])
def test_secrets_never_appear_in_error_messages(case, status):
    body = {"error": f"bad key {SECRET}", "message": f"bad key {SECRET}", "reason": f"bad key {SECRET}",
            "detail": f"bad key {SECRET}", "status": "auth_failure"}
    a, _, method, payload = build(case, reply(status, body))
    with pytest.raises(ProviderError) as caught:
        run(a.call(method, payload, ctx(method)))
    assert SECRET not in caught.value.message and SECRET not in str(caught.value)


@pytest.mark.parametrize("case", CASES[:1] + CASES[2:3], ids=IDS[:1] + IDS[2:3])
def test_one_client_is_reused_and_closed(case):
    a, _, method, payload = build(case, reply(500))

    async def twice() -> tuple[object, object]:
        for _ in range(2):
            with pytest.raises(ProviderError):
                await a.call(method, payload, ctx(method))
        first = a.http
        await a.close()
        return first, a._client

    client, after = run(twice())
    assert client.is_closed and after is None


@pytest.mark.parametrize("name", ["airtable", "hubspot", "apollo", "dropcontact", "zerobounce", "neverbounce"])
def test_registry_names_settings_and_auth_settings(name):
    cls = get_adapter_class(name)
    assert cls.name == name and cls.capabilities and cls.has_probe
    assert all(s in cls.Settings.model_fields for s in cls.auth_settings)
    fields = cls.Settings.model_fields
    assert fields["verify_tls"].default is True and "ca_file" in fields


def test_httpx_is_imported_only_when_a_client_is_made():
    code = ("import sys\n"
            "from actors.adapters.registry import get_adapter_class\n"
            "for n in ['airtable','hubspot','apollo','dropcontact','zerobounce','neverbounce']: get_adapter_class(n)\n"
            "print('httpx' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tls_settings(tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    a = make(ZeroBounceAdapter, None, api_key=SECRET, ca_file=str(bundle))
    assert isinstance(a.http._transport._pool._ssl_context, ssl.SSLContext)
    assert a.warnings() == []
    insecure = make(ZeroBounceAdapter, None, api_key=SECRET, verify_tls=False)
    assert "verify_tls" in insecure.warnings()[0]
    run(a.close())
