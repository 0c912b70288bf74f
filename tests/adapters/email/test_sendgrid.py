"""SendGrid: unit tests on httpx.MockTransport, then the adapter against its stand-in."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from actors.adapters.email.sendgrid import SendGridAdapter, SendGridSettings
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
from tests.adapters.email.conftest import SENDGRID_KEY

KEY = "SG.unit-test-key-5678"
EMAIL = SendEmail(to=["ann@example.com", "bob@example.com"], subject="Hi", text="Hello", html="<p>Hello</p>",
                  from_addr="news@example.com", reply_to="sales@example.com", headers={"X-Campaign": "spring"})
CTX = CallContext(request_id="req-1", method="send_email", idempotency_key="lead-42-welcome")


def adapter(handler: Callable[[httpx.Request], httpx.Response] | None, **settings: Any) -> SendGridAdapter:
    base = {"api_key": KEY}
    base.update(settings)
    transport = httpx.MockTransport(handler or _no_request)
    return SendGridAdapter(SendGridSettings.model_validate(base), capability="email_sending", provider="sendgrid",
                           transport=transport)


def _no_request(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request expected, got {request.method} {request.url}")


def call(a: SendGridAdapter, payload: SendEmail = EMAIL, ctx: CallContext = CTX) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        try:
            return await a.call("send_email", payload, ctx)
        finally:
            await a.close()

    return asyncio.run(go())


def error_of(handler: Callable[[httpx.Request], httpx.Response], **settings: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        call(adapter(handler, **settings))
    assert KEY not in str(info.value)
    return info.value


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, (dict, list)):
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, content=(body or "").encode(), headers=headers)

    return handler


# --- unit: request and value ------------------------------------------------------------


def test_request_shape_and_value() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, headers={"X-Message-Id": "W86EgYT6SQKk0lRflfLRsA"})

    value = call(adapter(handler))
    (request,) = seen
    assert request.method == "POST" and str(request.url) == "https://api.sendgrid.com/v3/mail/send"
    assert request.headers["authorization"] == f"Bearer {KEY}" and request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    message_id = make_message_id(CTX, "news@example.com")
    assert body == {
        "personalizations": [{"to": [{"email": "ann@example.com"}, {"email": "bob@example.com"}]}],
        "from": {"email": "news@example.com"},
        "reply_to": {"email": "sales@example.com"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "Hello"}, {"type": "text/html", "value": "<p>Hello</p>"}],
        "headers": {"X-Campaign": "spring", "Message-ID": message_id},
        "custom_args": {"request_id": "req-1", "idempotency_key": "lead-42-welcome"},
    }
    assert value == {"message_id": "W86EgYT6SQKk0lRflfLRsA", "rfc_message_id": message_id, "sandbox": False}


def test_eu_base_url_default_sender_and_sandbox_mode() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, headers={"X-Message-Id": "id1"})

    payload = SendEmail(to=["ann@example.com"], subject="Hi", html="<b>x</b>")
    call(adapter(handler, base_url="https://api.eu.sendgrid.com", from_addr="bot@example.com", from_name="Bot",
                 sandbox_mode=True), payload)
    body = json.loads(seen[0].content)
    assert str(seen[0].url) == "https://api.eu.sendgrid.com/v3/mail/send"
    assert body["from"] == {"email": "bot@example.com", "name": "Bot"}
    assert body["content"] == [{"type": "text/html", "value": "<b>x</b>"}]
    assert body["mail_settings"] == {"sandbox_mode": {"enable": True}} and "reply_to" not in body


# --- unit: errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures(status: int) -> None:
    error = error_of(answer(status, {"errors": [{"field": None, "message": "authorization grant is invalid"}]}))
    assert isinstance(error, AuthError) and error.status == status and "authorization grant" in error.message


def test_429_waits_until_the_reset_time() -> None:
    reset = int(time.time()) + 42
    error = error_of(answer(429, {"errors": [{"field": None, "message": "too many requests"}]},
                            {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}))
    assert isinstance(error, RateLimited) and 40 <= error.retry_after_s <= 42 and not error.maybe_delivered


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status: int) -> None:
    error = error_of(answer(status, "upstream failure"))
    assert isinstance(error, TransientError) and not error.maybe_delivered


@pytest.mark.parametrize("status", [400, 413])
def test_rejections_carry_sendgrid_s_words(status: int) -> None:
    body = {"errors": [{"field": "from.email", "message": "The from object must be provided for every email send."}]}
    error = error_of(answer(status, body))
    assert isinstance(error, ProviderRejected) and "from object must be provided" in error.message


def test_a_server_echoing_the_key_is_masked() -> None:
    error = error_of(answer(400, {"errors": [{"message": f"bad key {KEY}"}]}))
    assert "***" in error.message


@pytest.mark.parametrize("headers", [{}, {"X-Message-Id": ""}])
def test_accepted_without_message_id_is_a_delivery_with_the_id_unknown(headers: dict[str, str]) -> None:
    # 202 is SendGrid's "accepted": the header is a convenience, not the proof.
    value = call(adapter(answer(202, "", headers)))
    assert value == {"message_id": None, "rfc_message_id": make_message_id(CTX, "news@example.com"), "sandbox": False}


def test_transport_failures() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    def read_timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    error = error_of(refused)
    assert isinstance(error, TransientError) and not error.maybe_delivered
    error = error_of(read_timeout)
    assert isinstance(error, AttemptTimeout) and error.maybe_delivered


def test_reserved_headers_are_refused_before_any_request() -> None:
    payload = SendEmail(to=["ann@example.com"], subject="Hi", text="x", from_addr="a@example.com",
                        headers={"To": "other@example.com"})
    with pytest.raises(ProviderRejected):
        call(adapter(None), payload)


def test_dry_run_makes_no_request() -> None:
    value = call(adapter(None), ctx=CallContext(request_id="r", method="send_email", dry_run=True))
    would = value["would_send"]
    assert value["delivered"] is False and would["url"] == "https://api.sendgrid.com/v3/mail/send"
    assert would["headers"]["Authorization"] == "Bearer ***" and would["json"]["subject"] == "Hi"
    assert KEY not in json.dumps(value)


# --- unit: probe ------------------------------------------------------------------------------


def probe(handler: Callable[[httpx.Request], httpx.Response]) -> None:
    asyncio.run(adapter(handler).probe())


def test_probe_asks_for_the_key_s_scopes() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"scopes": ["mail.send", "alerts.read"]})

    probe(handler)
    assert seen[0].method == "GET" and seen[0].url.path == "/v3/scopes"


@pytest.mark.parametrize("handler, kind", [
    (answer(200, {"scopes": ["alerts.read"]}), AuthError),
    (answer(401, {"errors": [{"message": "invalid"}]}), AuthError),
    (answer(200, "<html>maintenance</html>"), MalformedResponse),
    (answer(200, {"result": []}), MalformedResponse),
    (answer(200, {"scopes": "mail.send"}), MalformedResponse),
])
def test_probe_failures(handler: Callable[[httpx.Request], httpx.Response], kind: type) -> None:
    with pytest.raises(kind):
        probe(handler)


# --- against the stand-in ------------------------------------------------------------------------


def live(sandbox: SandboxRunner, **settings: Any) -> SendGridAdapter:
    base = {"base_url": sandbox.url("sendgrid"), "api_key": SENDGRID_KEY}
    base.update(settings)
    return SendGridAdapter(SendGridSettings.model_validate(base), capability="email_sending", provider="sendgrid")


def test_stand_in_accepts_and_keeps_the_message(http_sandbox: SandboxRunner) -> None:
    value = call(live(http_sandbox))
    (sent,) = http_sandbox["sendgrid"].sent
    assert sent["x_message_id"] == value["message_id"]
    assert sent["body"]["custom_args"]["idempotency_key"] == "lead-42-welcome"
    asyncio.run(live(http_sandbox).probe())


def test_stand_in_rate_limit_and_auth(http_sandbox: SandboxRunner) -> None:
    with pytest.raises(AuthError):
        call(live(http_sandbox, api_key="SG.wrong"))
    http_sandbox["sendgrid"].faults.update({"throttle_for_s": 20})
    with pytest.raises(RateLimited) as info:
        call(live(http_sandbox))
    assert 18 <= info.value.retry_after_s <= 21 and not http_sandbox["sendgrid"].sent


def test_stand_in_validates_like_sendgrid(http_sandbox: SandboxRunner) -> None:
    async def post(body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=http_sandbox.url("sendgrid")) as client:
            return await client.post("/v3/mail/send", json=body, headers={"Authorization": f"Bearer {SENDGRID_KEY}"})

    good = {"personalizations": [{"to": [{"email": "a@example.com"}]}], "from": {"email": "b@example.com"},
            "subject": "s", "content": [{"type": "text/plain", "value": "v"}]}
    response = asyncio.run(post(good))
    assert response.status_code == 202 and response.content == b"" and response.headers["X-Message-Id"]
    assert int(response.headers["X-RateLimit-Remaining"]) < int(response.headers["X-RateLimit-Limit"])
    response = asyncio.run(post({**good, "content": []}))
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "content"
    response = asyncio.run(post({**good, "headers": {"Subject": "x"}}))
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "headers"
