"""Mailgun: unit tests on httpx.MockTransport, then the adapter against its stand-in."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from actors.adapters.email.mailgun import MailgunAdapter, MailgunSettings
from actors.adapters.email.smtp import make_message_id
from actors.errors import (
    AttemptTimeout,
    AuthError,
    MalformedResponse,
    ProviderError,
    ProviderRejected,
    RateLimited,
    TransientError,
)
from actors.messages import CallContext
from actors.payloads import SendEmail
from actors.sandbox.base import SandboxRunner
from tests.adapters.email.conftest import MAILGUN_DOMAIN, MAILGUN_KEY, MAILGUN_SENDING_KEY

KEY = "key-unit-test-5678"
EMAIL = SendEmail(to=["ann@example.com", "bob@example.com"], subject="Hi", text="Hello", html="<p>Hello</p>",
                  from_addr="news@example.com", reply_to="sales@example.com", headers={"X-Campaign": "spring"})
CTX = CallContext(request_id="req-1", method="send_email", idempotency_key="lead-42-welcome")
# What Mailgun may show the recipient of the key: its digest (the Message-ID's local part).
KEY_DIGEST = hashlib.sha256(b"key:lead-42-welcome").hexdigest()[:32]
QUEUED = {"id": "<20240203123456.1.ABCDEF@mg.example.com>", "message": "Queued. Thank you."}


def adapter(handler: Callable[[httpx.Request], httpx.Response] | None, **settings: Any) -> MailgunAdapter:
    base = {"api_key": KEY, "domain": "mg.example.com"}
    base.update(settings)
    return MailgunAdapter(MailgunSettings.model_validate(base), capability="email_sending", provider="mailgun",
                          transport=httpx.MockTransport(handler or _no_request))


def _no_request(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request expected, got {request.method} {request.url}")


def call(a: MailgunAdapter, payload: SendEmail = EMAIL, ctx: CallContext = CTX) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        try:
            return await a.call("send_email", payload, ctx)
        finally:
            await a.close()

    return asyncio.run(go())


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, (dict, list)):
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, content=(body or "").encode(), headers=headers)

    return handler


def error_of(handler: Callable[[httpx.Request], httpx.Response], **settings: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        call(adapter(handler, **settings))
    assert KEY not in str(info.value)
    return info.value


# --- unit: request and value --------------------------------------------------------------


def test_request_shape_and_value() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=QUEUED)

    value = call(adapter(handler))
    (request,) = seen
    assert request.method == "POST" and str(request.url) == "https://api.mailgun.net/v3/mg.example.com/messages"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    message_id = make_message_id(CTX, "news@example.com")
    assert parse_qsl(request.content.decode()) == [
        ("from", "news@example.com"), ("to", "ann@example.com"), ("to", "bob@example.com"), ("subject", "Hi"),
        ("text", "Hello"), ("html", "<p>Hello</p>"), ("h:Reply-To", "sales@example.com"),
        ("h:Message-Id", message_id), ("h:X-Campaign", "spring"), ("v:request_id", CTX.request_id),
        ("v:idempotency_key_hash", KEY_DIGEST),
    ]
    assert value == {"message_id": QUEUED["id"], "rfc_message_id": message_id, "test_mode": False}


def test_eu_region_test_mode_and_no_key_no_variable() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=QUEUED)

    ctx = CallContext(request_id="req-1", method="send_email")
    call(adapter(handler, base_url="https://api.eu.mailgun.net", test_mode=True, from_addr="bot@example.com"),
         SendEmail(to=["ann@example.com"], subject="Hi", text="x"), ctx)
    form = dict(parse_qsl(seen[0].content.decode()))
    assert seen[0].url.host == "api.eu.mailgun.net" and form["o:testmode"] == "yes"
    assert form["from"] == "bot@example.com" and "v:idempotency_key_hash" not in form and "html" not in form


# --- unit: errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("status, body", [(401, "Forbidden"), (403, {"message": "Domain is not allowed"})])
def test_auth_failures(status: int, body: Any) -> None:
    error = error_of(answer(status, body))
    assert isinstance(error, AuthError) and error.status == status


def test_429_with_retry_after() -> None:
    error = error_of(answer(429, {"message": "Too many requests"}, {"Retry-After": "17"}))
    assert isinstance(error, RateLimited) and error.retry_after_s == 17


def test_429_without_a_hint() -> None:
    error = error_of(answer(429, {"message": "Too many requests"}))
    assert isinstance(error, RateLimited) and error.retry_after_s is None


def test_500_is_transient() -> None:
    error = error_of(answer(500, {"message": "Internal error"}))
    assert isinstance(error, TransientError) and not error.maybe_delivered


def test_404_names_the_domain_and_the_region() -> None:
    error = error_of(answer(404, {"message": "Domain not found: mg.example.com"}))
    assert isinstance(error, TransientError) and "mg.example.com" in error.message and "api.eu.mailgun.net" in error.message


def test_400_carries_mailgun_s_words() -> None:
    error = error_of(answer(400, {"message": "to parameter is not a valid address. please check documentation"}))
    assert isinstance(error, ProviderRejected) and "not a valid address" in error.message


@pytest.mark.parametrize("handler", [
    answer(200, "<html>proxy login</html>"),
    answer(200, {"message": "Queued. Thank you."}),
    answer(200, {"id": 12345, "message": "Queued. Thank you."}),
])
def test_unreadable_success_is_malformed_and_maybe_delivered(handler: Callable[[httpx.Request], httpx.Response]) -> None:
    error = error_of(handler)
    assert isinstance(error, MalformedResponse) and error.maybe_delivered


def test_read_timeout_may_have_delivered() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    error = error_of(handler)
    assert isinstance(error, AttemptTimeout) and error.maybe_delivered


def test_a_server_echoing_the_key_is_masked() -> None:
    error = error_of(answer(400, {"message": f"invalid key {KEY}"}))
    assert "***" in error.message


def test_dry_run_makes_no_request() -> None:
    value = call(adapter(None), ctx=CallContext(request_id="r", method="send_email", dry_run=True))
    would = value["would_send"]
    assert value["delivered"] is False and would["url"] == "https://api.mailgun.net/v3/mg.example.com/messages"
    assert would["auth"] == "basic api:***" and would["form"]["to"] == ["ann@example.com", "bob@example.com"]
    assert KEY not in json.dumps(value)


# --- unit: probe ----------------------------------------------------------------------------------


def test_probe_reads_the_domain() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"domain": {"name": "mg.example.com", "state": "active", "is_disabled": False}})

    asyncio.run(adapter(handler).probe())
    assert seen[0].method == "GET" and seen[0].url.path == "/v4/domains/mg.example.com"


@pytest.mark.parametrize("handler, kind", [
    (answer(200, {"domain": {"name": "mg.example.com", "is_disabled": True}}), AuthError),
    (answer(401, "Forbidden"), AuthError),
    (answer(404, {"message": "Domain not found"}), TransientError),
    (answer(200, "not json"), MalformedResponse),
    (answer(200, {"domain": "mg.example.com"}), MalformedResponse),
])
def test_probe_failures(handler: Callable[[httpx.Request], httpx.Response], kind: type) -> None:
    with pytest.raises(kind):
        asyncio.run(adapter(handler).probe())


def test_no_probe_with_a_sending_key() -> None:
    a = adapter(None, probe_domain=False)
    asyncio.run(a.probe())
    assert a.has_probe is False and MailgunAdapter.has_probe is True


# --- against the stand-in -------------------------------------------------------------------------


def live(sandbox: SandboxRunner, **settings: Any) -> MailgunAdapter:
    base = {"base_url": sandbox.url("mailgun"), "api_key": MAILGUN_KEY, "domain": MAILGUN_DOMAIN}
    base.update(settings)
    return MailgunAdapter(MailgunSettings.model_validate(base), capability="email_sending", provider="mailgun")


def test_stand_in_accepts_with_our_message_id(http_sandbox: SandboxRunner) -> None:
    value = call(live(http_sandbox))
    (sent,) = http_sandbox["mailgun"].sent
    assert value["message_id"] == value["rfc_message_id"] == sent["id"]
    assert sent["recipients"] == ["ann@example.com", "bob@example.com"]
    assert sent["form"]["v:idempotency_key_hash"] == KEY_DIGEST
    assert "lead-42-welcome" not in json.dumps(sent["form"])  # the recipient sees v: variables
    assert sent["form"]["h:X-Campaign"] == "spring"
    asyncio.run(live(http_sandbox).probe())


def test_stand_in_sending_key_sends_but_cannot_probe(http_sandbox: SandboxRunner) -> None:
    call(live(http_sandbox, api_key=MAILGUN_SENDING_KEY))
    with pytest.raises(AuthError):
        asyncio.run(live(http_sandbox, api_key=MAILGUN_SENDING_KEY).probe())
    asyncio.run(live(http_sandbox, api_key=MAILGUN_SENDING_KEY, probe_domain=False).probe())


def test_stand_in_faults(http_sandbox: SandboxRunner) -> None:
    with pytest.raises(AuthError):
        call(live(http_sandbox, api_key="key-wrong"))
    with pytest.raises(TransientError, match="not found"):
        call(live(http_sandbox, domain="other.example.com"))
    http_sandbox["mailgun"].faults.update({"throttle_for_s": 20, "retry_after_s": 20})
    with pytest.raises(RateLimited) as info:
        call(live(http_sandbox))
    assert info.value.retry_after_s == 20 and not http_sandbox["mailgun"].sent


def test_stand_in_reads_multipart_like_mailgun(http_sandbox: SandboxRunner) -> None:
    async def post(fields: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=http_sandbox.url("mailgun"), auth=("api", MAILGUN_KEY)) as client:
            return await client.post(f"/v3/{MAILGUN_DOMAIN}/messages", data=fields,
                                     files={"attachment": ("a.txt", b"hello")})

    response = asyncio.run(post({"from": "a@example.com", "to": "b@example.com", "subject": "s", "text": "t"}))
    assert response.status_code == 200 and response.json()["message"] == "Queued. Thank you."
    response = asyncio.run(post({"to": "b@example.com", "subject": "s", "text": "t"}))
    assert response.status_code == 400 and response.json() == {"message": "from parameter is missing"}


def test_stand_in_answers_mailgun_s_official_sdk(http_sandbox: SandboxRunner) -> None:
    """The stand-in must accept what Mailgun's own Python SDK sends: domain
    details at /v3/domains/{name}, messages at /v3/{domain}/messages."""
    mailgun_client = pytest.importorskip("mailgun.client", reason="the official SDK needs Python 3.11+")
    with mailgun_client.Client(auth=("api", MAILGUN_KEY), api_url=http_sandbox.url("mailgun")) as client:
        details = client.domains.get(domain=MAILGUN_DOMAIN)
        sent = client.messages.create(domain=MAILGUN_DOMAIN, data={
            "from": f"news@{MAILGUN_DOMAIN}", "to": "ann@example.com", "subject": "Hi", "text": "Hello"})
    assert details.status_code == 200 and details.json()["domain"]["name"] == MAILGUN_DOMAIN
    assert sent.status_code == 200 and sent.json()["message"] == "Queued. Thank you."
    assert [(r.method, r.path) for r in http_sandbox["mailgun"].received] == [
        ("GET", f"/v3/domains/{MAILGUN_DOMAIN}"), ("POST", f"/v3/{MAILGUN_DOMAIN}/messages")]
