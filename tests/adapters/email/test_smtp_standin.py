"""The SMTP adapter against a real SMTP server on loopback (aiosmtpd, trustme certificate)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.adapters.email.smtp import SmtpAdapter, SmtpSettings
from actors.errors import AttemptTimeout, AuthError, ErrorKind, ProviderError, RateLimited, TransientError
from actors.messages import CallContext
from actors.payloads import SendEmail
from actors.sandbox.smtp import SmtpStandIn
from tests.adapters.email.conftest import SMTP_PASSWORD, SMTP_TOKEN, SMTP_USER

EMAIL = SendEmail(to=["ann@example.com", "bob@example.com"], subject="Grüße", text="Hello", html="<p>Hello</p>",
                  reply_to="sales@example.com", headers={"X-Campaign": "spring"})


def ctx(key: str | None = "lead-42", **kw: Any) -> CallContext:
    return CallContext(request_id="req-1", method="send_email", idempotency_key=key, **kw)


def adapter(server: SmtpStandIn, implicit_tls: bool = False, **overrides: Any) -> SmtpAdapter:
    settings = SmtpSettings.model_validate(server.adapter_settings(implicit_tls=implicit_tls, **overrides))
    return SmtpAdapter(settings, capability="email_sending", provider="smtp")


def run(a: SmtpAdapter, payload: SendEmail = EMAIL, context: CallContext | None = None) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        try:
            return await a.call("send_email", payload, context or ctx())
        finally:
            await a.close()

    return asyncio.run(go())


def fails(a: SmtpAdapter, payload: SendEmail = EMAIL, context: CallContext | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        run(a, payload, context)
    assert SMTP_PASSWORD not in str(info.value) and SMTP_TOKEN not in str(info.value)
    return info.value


@pytest.mark.parametrize("auth", ["plain", "login", "xoauth2"])
def test_starttls_then_auth_then_the_message(smtp_server: SmtpStandIn, auth: str) -> None:
    secret = {"password": None, "oauth_token": SMTP_TOKEN} if auth == "xoauth2" else {}
    value = run(adapter(smtp_server, auth_method=auth, **secret))
    (mail,) = smtp_server.received
    assert mail.tls and mail.login == SMTP_USER
    assert mail.mail_from == SMTP_USER and mail.rcpt_tos == ["ann@example.com", "bob@example.com"]
    msg = mail.message
    assert msg["Message-ID"] == value["message_id"] and msg["Subject"] == "Grüße"
    assert msg["Reply-To"] == "sales@example.com" and msg["X-Campaign"] == "spring"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert value["accepted"] == ["ann@example.com", "bob@example.com"] and value["refused"] == {}


def test_implicit_tls(smtp_server: SmtpStandIn) -> None:
    run(adapter(smtp_server, implicit_tls=True))
    assert smtp_server.received[0].tls


def test_wrong_password_is_auth_and_sends_nothing(smtp_server: SmtpStandIn) -> None:
    error = fails(adapter(smtp_server, password="wrong-password"))
    assert error.kind is ErrorKind.AUTH and error.status == 535 and not smtp_server.received


def test_bad_oauth_token_gets_google_style_challenge_then_535(smtp_server: SmtpStandIn) -> None:
    error = fails(adapter(smtp_server, password=None, oauth_token="expired"))
    assert error.kind is ErrorKind.AUTH and "535" in error.message


def test_untrusted_certificate_is_refused(smtp_server: SmtpStandIn) -> None:
    error = fails(adapter(smtp_server, ca_file=None))
    assert isinstance(error, TransientError) and "ca_file" in error.message and not smtp_server.received


def test_without_verification_it_still_encrypts(smtp_server: SmtpStandIn) -> None:
    a = adapter(smtp_server, ca_file=None, verify_tls=False)
    assert a.warnings()
    run(a)
    assert smtp_server.received[0].tls


def test_server_down_answers_421_service_not_available(smtp_server: SmtpStandIn) -> None:
    smtp_server.set_faults(down=True)
    error = fails(adapter(smtp_server))
    # 421 4.3.2 says the service is going away (transient), not "slow down" (4.7.0).
    assert isinstance(error, TransientError) and error.status == 421 and not error.maybe_delivered


def test_nothing_listening_is_transient(smtp_server: SmtpStandIn) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    error = fails(adapter(smtp_server, port=port))
    assert isinstance(error, TransientError) and not error.maybe_delivered


def test_rejected_auth_knob(smtp_server: SmtpStandIn) -> None:
    smtp_server.set_faults(reject_auth=True)
    assert isinstance(fails(adapter(smtp_server)), AuthError)


@pytest.mark.parametrize("code", [451, 452, 421])
def test_throttled(smtp_server: SmtpStandIn, code: int) -> None:
    smtp_server.set_faults(throttle_for_s=30, throttle_code=code)
    error = fails(adapter(smtp_server))
    assert isinstance(error, RateLimited) and error.status == code and not smtp_server.received


def test_daily_quota(smtp_server: SmtpStandIn) -> None:
    smtp_server.set_faults(quota_exceeded=True)
    error = fails(adapter(smtp_server))
    assert isinstance(error, RateLimited) and error.retry_after_s == 3600


def test_an_unknown_recipient_is_reported_the_others_served(smtp_server: SmtpStandIn) -> None:
    payload = SendEmail(to=["nobody@example.com", "ann@example.com"], subject="Hi", text="x")
    value = run(adapter(smtp_server), payload)
    assert value["accepted"] == ["ann@example.com"] and value["refused"]["nobody@example.com"].startswith("550 5.1.1")
    assert smtp_server.received[0].rcpt_tos == ["ann@example.com"]


def test_connection_dropped_after_data_may_have_delivered(smtp_server: SmtpStandIn) -> None:
    smtp_server.set_faults(drop_after_data=True)
    error = fails(adapter(smtp_server))
    assert error.maybe_delivered and len(smtp_server.received) == 1


def test_slow_reply_after_data_may_have_delivered(smtp_server: SmtpStandIn) -> None:
    smtp_server.set_faults(latency_ms=1000)
    error = fails(adapter(smtp_server), context=ctx(timeout_s=0.3))
    assert isinstance(error, AttemptTimeout) and error.maybe_delivered and len(smtp_server.received) == 1


def test_sessions_are_reused(smtp_server: SmtpStandIn) -> None:
    async def three() -> int:
        a = adapter(smtp_server)
        for i in range(3):
            await a.call("send_email", EMAIL, ctx(f"k{i}"))
        idle = len(a._pool.idle)
        await a.close()
        return idle

    assert asyncio.run(three()) == 1 and len(smtp_server.received) == 3
    assert len({m.message["Message-ID"] for m in smtp_server.received}) == 3


def test_probe_sends_nothing_and_notices_bad_credentials(smtp_server: SmtpStandIn) -> None:
    asyncio.run(adapter(smtp_server).probe())
    assert not smtp_server.received
    with pytest.raises(AuthError):
        asyncio.run(adapter(smtp_server, password="wrong-password").probe())


def test_plaintext_auth_is_not_offered_before_starttls(smtp_server: SmtpStandIn) -> None:
    error = fails(adapter(smtp_server, tls_mode="none"))
    # The server requires STARTTLS first, as Gmail does.
    assert error.kind is ErrorKind.AUTH and not smtp_server.received
