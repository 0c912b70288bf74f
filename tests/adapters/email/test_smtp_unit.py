"""The SMTP adapter without a network: a scripted client (fake_smtp) and the
pure error table. An attempt's time is read on a virtual clock the fake
server moves (`taking`): nothing here depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import email
import email.policy
from typing import Any

import aiosmtplib
import pytest
from pydantic import ValidationError

from actors.adapters.email.smtp import (
    QUOTA_RETRY_AFTER_S,
    GmailSettings,
    GmailSmtpAdapter,
    SmtpAdapter,
    SmtpSettings,
    make_message_id,
    map_exception,
    reply_error,
)
from actors.errors import (
    AttemptTimeout,
    AuthError,
    ErrorKind,
    ProviderError,
    ProviderRejected,
    RateLimited,
    TransientError,
)
from actors.messages import CallContext
from actors.payloads import SendEmail
from tests.adapters.email.fake_smtp import FakeServer
from tests.unit.fakes import Clock, until

PASSWORD = "app-password-1234"
TOKEN = "ya29.oauth-token-5678"
EMAIL = SendEmail(to=["ann@example.com", "bob@example.com"], subject="Hi", text="Hello", html="<p>Hello</p>",
                  reply_to="sales@example.com", headers={"X-Campaign": "spring"})


def ctx(key: str | None = "lead-42-welcome", **kw: Any) -> CallContext:
    return CallContext(request_id=kw.pop("request_id", "req-1"), method="send_email", idempotency_key=key, **kw)


def adapter(server: FakeServer | None = None, cls: type[SmtpAdapter] = SmtpAdapter, clock: Clock | None = None,
            **settings: Any) -> SmtpAdapter:
    base = {"host": "smtp.example.com", "username": "bot@example.com", "password": PASSWORD}
    base.update(settings)
    transport = server.factory if server is not None else _no_io
    return cls(cls.Settings.model_validate(base), capability="email_sending", provider="smtp", transport=transport,
               clock=(clock or Clock(virtual=True)).monotonic)


def taking(clock: Clock, seconds: float) -> Any:
    """A server step that takes `seconds` of the virtual clock, at once."""
    async def step() -> None:
        clock.now += seconds

    return step


def _no_io(**kwargs: Any) -> Any:
    raise AssertionError("no SMTP connection expected")


def send(a: SmtpAdapter, payload: SendEmail = EMAIL, context: CallContext | None = None) -> dict[str, Any]:
    return asyncio.run(a.call("send_email", payload, context or ctx()))


def send_error(a: SmtpAdapter, payload: SendEmail = EMAIL, context: CallContext | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        send(a, payload, context)
    assert PASSWORD not in str(info.value) and TOKEN not in str(info.value)
    return info.value


# --- the one table -------------------------------------------------------------------


@pytest.mark.parametrize("code, text, kind, retry_after", [
    (535, "5.7.8 Username and Password not accepted", ErrorKind.AUTH, None),
    (534, "5.7.9 Application-specific password required", ErrorKind.AUTH, None),
    (530, "5.7.0 Authentication Required", ErrorKind.AUTH, None),
    (454, "4.7.0 Temporary authentication failure", ErrorKind.TRANSIENT, None),
    (421, "4.7.0 Try again later, closing connection", ErrorKind.RATE_LIMITED, None),
    (450, "4.2.1 receiving mail too quickly", ErrorKind.RATE_LIMITED, None),
    (451, "4.3.0 Mail server temporarily rejected message", ErrorKind.RATE_LIMITED, None),
    (452, "4.5.3 Your message has too many recipients", ErrorKind.RATE_LIMITED, None),
    (550, "5.4.5 Daily user sending quota exceeded.", ErrorKind.RATE_LIMITED, QUOTA_RETRY_AFTER_S),
    (550, "5.1.1 The email account that you tried to reach does not exist", ErrorKind.INVALID_REQUEST, None),
    (554, "5.7.1 Message rejected: spam", ErrorKind.INVALID_REQUEST, None),
    (441, "4.4.1 No answer from host", ErrorKind.TRANSIENT, None),
])
def test_reply_table(code: int, text: str, kind: ErrorKind, retry_after: float | None) -> None:
    error = reply_error(code, text, "smtp", "mail")
    assert error.kind is kind and error.retry_after_s == retry_after and error.status == code
    assert text in error.message and not error.maybe_delivered


SETTINGS = SmtpSettings(host="smtp.example.com")


@pytest.mark.parametrize("exc, stage, kind, maybe", [
    (aiosmtplib.SMTPConnectError("Error connecting"), "connect", ErrorKind.TRANSIENT, False),
    (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"), "connect", ErrorKind.TIMEOUT, False),
    (aiosmtplib.SMTPReadTimeoutError("Timed out waiting"), "rcpt", ErrorKind.TIMEOUT, False),
    (aiosmtplib.SMTPReadTimeoutError("Timed out waiting"), "data", ErrorKind.TIMEOUT, True),
    (aiosmtplib.SMTPServerDisconnected("Connection lost"), "mail", ErrorKind.TRANSIENT, False),
    (aiosmtplib.SMTPServerDisconnected("Connection lost"), "data", ErrorKind.TRANSIENT, True),
    (ConnectionResetError("reset by peer"), "data", ErrorKind.TRANSIENT, True),
    (TimeoutError("attempt time used up before DATA"), "rcpt", ErrorKind.TIMEOUT, False),
    (aiosmtplib.SMTPDataError(554, "5.6.0 Message rejected"), "data", ErrorKind.INVALID_REQUEST, False),
    (aiosmtplib.SMTPConnectResponseError(421, "4.3.2 Service not available"), "connect", ErrorKind.TRANSIENT, False),
    (aiosmtplib.SMTPConnectResponseError(421, "4.7.0 Try again later"), "connect", ErrorKind.RATE_LIMITED, False),
    (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"), "mail", ErrorKind.INVALID_REQUEST, False),
])
def test_exceptions_map_by_stage(exc: BaseException, stage: str, kind: ErrorKind, maybe: bool) -> None:
    error = map_exception(exc, "smtp", stage, SETTINGS)
    assert (error.kind, error.maybe_delivered) == (kind, maybe)


def test_refused_recipients_take_the_first_reply() -> None:
    refused = aiosmtplib.SMTPRecipientsRefused([
        aiosmtplib.SMTPRecipientRefused(452, "4.5.3 too many recipients", "a@example.com"),
        aiosmtplib.SMTPRecipientRefused(550, "5.1.1 no such user", "b@example.com")])
    error = map_exception(refused, "smtp", "rcpt", SETTINGS)
    assert error.kind is ErrorKind.RATE_LIMITED and "1 more recipient" in error.message


# --- a message and its envelope ------------------------------------------------------


def test_send_shapes_the_session_and_the_message() -> None:
    server = FakeServer()
    value = send(adapter(server))
    assert server.commands() == ["connect", "ehlo", "starttls", "ehlo", "auth_plain", "mail", "rcpt", "rcpt", "data"]
    kwargs = server.clients[0].kwargs
    assert (kwargs["hostname"], kwargs["port"], kwargs["use_tls"], kwargs["start_tls"]) == ("smtp.example.com", 587, False, False)
    assert kwargs["tls_context"].verify_mode.name == "CERT_REQUIRED"
    assert server.args("auth_plain") == [("bot@example.com", PASSWORD)]
    assert server.args("mail") == [("bot@example.com",)]
    assert server.args("rcpt") == [("ann@example.com",), ("bob@example.com",)]
    (data,), = server.args("data")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    expected_id = make_message_id(ctx(), "bot@example.com")
    assert msg["Message-ID"] == expected_id and msg["From"] == "bot@example.com"
    assert msg["To"] == "ann@example.com, bob@example.com" and msg["Reply-To"] == "sales@example.com"
    assert msg["Subject"] == "Hi" and msg["X-Campaign"] == "spring" and msg["Date"]
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert b"\r\n" in data
    assert value == {"message_id": expected_id, "rfc_message_id": expected_id,
                     "accepted": ["ann@example.com", "bob@example.com"], "refused": {}}


def test_message_id_follows_the_idempotency_key_else_the_request() -> None:
    same = make_message_id(ctx("k1", request_id="a"), "x@example.com")
    assert same == make_message_id(ctx("k1", request_id="b"), "x@example.com")
    assert same != make_message_id(ctx("k2"), "x@example.com") and same.endswith("@example.com>")
    assert "k1" not in same
    assert make_message_id(ctx(None, request_id="a"), "x@example.com") != make_message_id(ctx(None, request_id="b"), "x@example.com")


def test_html_only_and_the_callers_own_message_id() -> None:
    server = FakeServer()
    payload = SendEmail(to=["ann@example.com"], subject="Hi", html="<b>x</b>", from_addr="news@example.org",
                        headers={"Message-ID": "<mine@example.org>"})
    value = send(adapter(server), payload)
    (data,), = server.args("data")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg.get_content_type() == "text/html" and msg["From"] == "news@example.org"
    assert value["message_id"] == "<mine@example.org>" and server.args("mail") == [("news@example.org",)]


def test_headers_the_gateway_sets_are_refused() -> None:
    payload = SendEmail(to=["ann@example.com"], subject="Hi", text="x", headers={"Bcc": "spy@example.com"})
    error = send_error(adapter(FakeServer()), payload)
    assert error.kind is ErrorKind.INVALID_REQUEST and "Bcc" in error.message


def test_no_sender_anywhere_is_refused() -> None:
    a = adapter(FakeServer(), username="relay-user")
    error = send_error(a, SendEmail(to=["ann@example.com"], subject="Hi", text="x"))
    assert error.kind is ErrorKind.INVALID_REQUEST and "from_addr" in error.message


def test_some_recipients_refused_the_rest_delivered() -> None:
    server = FakeServer()
    server.fail("rcpt", aiosmtplib.SMTPRecipientRefused(550, "5.1.1 no such user", "ann@example.com"))
    value = send(adapter(server))
    assert value["accepted"] == ["bob@example.com"] and value["refused"] == {"ann@example.com": "550 5.1.1 no such user"}
    assert "data" in server.commands()


def test_every_recipient_refused_sends_no_data() -> None:
    server = FakeServer()
    for address in EMAIL.to:
        server.fail("rcpt", aiosmtplib.SMTPRecipientRefused(550, "5.1.1 no such user", address))
    error = send_error(adapter(server))
    assert error.kind is ErrorKind.INVALID_REQUEST and not error.maybe_delivered
    assert "data" not in server.commands()


# --- authentication --------------------------------------------------------------------


def test_auto_picks_login_when_plain_is_not_offered() -> None:
    server = FakeServer(auth_methods=("login",))
    send(adapter(server))
    assert server.args("auth_login") == [("bot@example.com", PASSWORD)]


def test_xoauth2_with_a_token() -> None:
    server = FakeServer(auth_methods=("plain", "xoauth2"))
    send(adapter(server, password=None, oauth_token=TOKEN))
    assert server.args("auth_xoauth2") == [("bot@example.com", TOKEN)]


def test_a_mechanism_the_server_does_not_offer_is_an_auth_error() -> None:
    error = send_error(adapter(FakeServer(auth_methods=("plain",)), password=None, oauth_token=TOKEN))
    assert isinstance(error, AuthError) and "XOAUTH2" in error.message and "auth_method" in error.message


def test_bad_credentials_are_an_auth_error_without_the_password() -> None:
    server = FakeServer()
    server.fail("auth_plain", aiosmtplib.SMTPAuthenticationError(535, f"5.7.8 rejected {PASSWORD}"))
    error = send_error(adapter(server))
    assert isinstance(error, AuthError) and error.status == 535 and "***" in error.message
    assert "mail" not in server.commands() and server.commands()[-1] == "close"


@pytest.mark.parametrize("code, text", [
    (538, "5.7.11 Encryption required for requested authentication mechanism"),
    (504, "5.5.4 Unrecognized authentication type"),
    (535, "5.7.8 Username and Password not accepted"),
])
def test_any_permanent_refusal_at_auth_is_an_auth_error(code: int, text: str) -> None:
    server = FakeServer()
    server.fail("auth_plain", aiosmtplib.SMTPAuthenticationError(code, text))
    error = send_error(adapter(server))
    assert error.kind is ErrorKind.AUTH and error.status == code and "at auth" in error.message
    # The probe (what self-checks run) sorts it the same way.
    server = FakeServer()
    server.fail("auth_plain", aiosmtplib.SMTPAuthenticationError(code, text))
    with pytest.raises(AuthError):
        asyncio.run(adapter(server).probe())


def test_starttls_is_required_not_optional() -> None:
    server = FakeServer(starttls=False)
    error = send_error(adapter(server))
    assert isinstance(error, TransientError) and "STARTTLS" in error.message
    assert "auth_plain" not in server.commands()


def test_implicit_tls_on_465_and_no_tls_only_when_asked() -> None:
    server = FakeServer()
    send(adapter(server, port=465))
    assert server.clients[0].kwargs["use_tls"] is True and "starttls" not in server.commands()
    server = FakeServer(starttls=False)
    send(adapter(server, port=25, tls_mode="none", username=None, password=None, from_addr="a@example.com"))
    assert server.clients[0].kwargs["tls_context"] is None
    assert not any(c.startswith("auth") for c in server.commands())


# --- failures by stage -------------------------------------------------------------------


@pytest.mark.parametrize("code, text, kind", [
    (451, "4.3.0 Try again later", RateLimited),
    (452, "4.5.3 too many recipients", RateLimited),
    (530, "5.7.0 Authentication Required", AuthError),
    (553, "5.1.8 sender address rejected", ProviderRejected),
])
def test_replies_to_mail(code: int, text: str, kind: type) -> None:
    server = FakeServer()
    server.fail("mail", aiosmtplib.SMTPSenderRefused(code, text, "bot@example.com"))
    error = send_error(adapter(server))
    assert isinstance(error, kind) and text in error.message and not error.maybe_delivered


def test_daily_quota_throttles_for_long() -> None:
    server = FakeServer()
    server.fail("data", aiosmtplib.SMTPDataError(550, "5.4.5 Daily user sending quota exceeded."))
    error = send_error(adapter(server, quota_retry_after_s=7200))
    assert isinstance(error, RateLimited) and error.retry_after_s == 7200 and not error.maybe_delivered


def test_rejected_data_is_not_delivered() -> None:
    server = FakeServer()
    server.fail("data", aiosmtplib.SMTPDataError(554, "5.7.1 Message rejected as spam"))
    error = send_error(adapter(server))
    assert isinstance(error, ProviderRejected) and "spam" in error.message and not error.maybe_delivered


def test_connection_refused_is_transient_and_not_delivered() -> None:
    server = FakeServer()
    refused = aiosmtplib.SMTPConnectError("Error connecting to smtp.example.com on port 587: refused")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    server.fail("connect", refused)
    error = send_error(adapter(server))
    assert isinstance(error, TransientError) and not error.maybe_delivered and "cannot connect" in error.message


def test_timeout_after_the_data_may_have_delivered() -> None:
    server = FakeServer()
    server.fail("data", aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"))
    error = send_error(adapter(server))
    assert isinstance(error, AttemptTimeout) and error.maybe_delivered


def test_disconnect_before_data_did_not_deliver() -> None:
    server = FakeServer()
    server.fail("rcpt", aiosmtplib.SMTPServerDisconnected("Connection lost"))
    error = send_error(adapter(server))
    assert isinstance(error, TransientError) and not error.maybe_delivered


def test_the_attempt_time_bounds_the_session() -> None:
    server, clock = FakeServer(), Clock(virtual=True)
    server.fail("rcpt", taking(clock, 0.1))
    error = send_error(adapter(server, clock=clock), context=ctx(timeout_s=0.05))
    assert isinstance(error, AttemptTimeout) and not error.maybe_delivered


# --- sessions are reused -------------------------------------------------------------------


def test_a_session_is_reused_for_the_next_message() -> None:
    server = FakeServer()

    async def twice() -> None:
        a = adapter(server)
        await a.call("send_email", EMAIL, ctx("k1"))
        await a.call("send_email", EMAIL, ctx("k2"))
        await a.close()

    asyncio.run(twice())
    assert server.commands().count("connect") == 1 and server.commands().count("data") == 2
    assert server.commands()[-2:] == ["quit", "close"]


def test_a_session_the_server_closed_is_replaced_once() -> None:
    server = FakeServer()

    async def twice() -> dict[str, Any]:
        a = adapter(server)
        await a.call("send_email", EMAIL, ctx("k1"))
        server.fail("mail", aiosmtplib.SMTPServerDisconnected("Connection lost"))
        return await a.call("send_email", EMAIL, ctx("k2"))

    value = asyncio.run(twice())
    assert value["accepted"] and server.commands().count("connect") == 2
    assert [n for n, c, _ in server.log if c == "data"] == [0, 1]


def test_sessions_are_bounded() -> None:
    server = FakeServer()

    async def busy() -> None:  # DATA holds its session until two are open: the others must wait for them
        await until(lambda: len(server.clients) >= 2)

    for _ in range(6):
        server.fail("data", busy)

    async def many() -> None:
        a = adapter(server, max_connections=2)
        await asyncio.gather(*(a.call("send_email", EMAIL, ctx(f"k{i}")) for i in range(6)))

    asyncio.run(many())
    assert len(server.clients) == 2 and server.commands().count("data") == 6


# --- probe and dry run ----------------------------------------------------------------------


def test_probe_authenticates_and_sends_nothing() -> None:
    server = FakeServer()
    asyncio.run(adapter(server).probe())
    assert server.commands() == ["connect", "ehlo", "starttls", "ehlo", "auth_plain", "noop", "quit", "close"]


def test_probe_reports_bad_credentials() -> None:
    server = FakeServer()
    server.fail("auth_plain", aiosmtplib.SMTPAuthenticationError(535, "5.7.8 no"))
    with pytest.raises(AuthError):
        asyncio.run(adapter(server).probe())


def test_dry_run_builds_the_message_and_does_no_io() -> None:
    value = send(adapter(None), context=ctx(dry_run=True))
    assert value["dry_run"] is True and value["delivered"] is False
    would = value["would_send"]
    assert would["envelope"] == {"mail_from": "bot@example.com", "rcpt_to": ["ann@example.com", "bob@example.com"]}
    assert would["server"] == {"host": "smtp.example.com", "port": 587, "tls_mode": "starttls"}
    assert value["message_id"] in would["message"] and "Subject: Hi" in would["message"]
    assert PASSWORD not in str(value)


# --- settings ------------------------------------------------------------------------------


def test_settings_check_what_each_auth_method_needs() -> None:
    with pytest.raises(ValidationError, match="oauth_token"):
        SmtpSettings(host="h", username="u", auth_method="xoauth2", password="p")
    with pytest.raises(ValidationError, match="username"):
        SmtpSettings(host="h", password="p")
    with pytest.raises(ValidationError):
        SmtpSettings(host="h", tls_mode="ssl")
    assert SmtpSettings(host="h", port=465).effective_tls_mode == "implicit"
    assert SmtpSettings(host="h").effective_tls_mode == "starttls"
    assert PASSWORD not in repr(SmtpSettings(host="h", username="u", password=PASSWORD))


def test_gmail_preset() -> None:
    settings = GmailSettings(username="bot@example.com", password=PASSWORD)
    assert (settings.host, settings.port, settings.effective_tls_mode) == ("smtp.gmail.com", 587, "starttls")
    with pytest.raises(ValidationError, match="full address"):
        GmailSettings(username="bot", password=PASSWORD)
    with pytest.raises(ValidationError, match="app password"):
        GmailSettings(username="bot@example.com")
    server = FakeServer(auth_methods=("login", "plain", "xoauth2"))
    send(adapter(server, GmailSmtpAdapter, host="smtp.gmail.com", password=None, oauth_token=TOKEN))
    assert server.clients[0].kwargs["hostname"] == "smtp.gmail.com"
    assert server.args("auth_xoauth2") == [("bot@example.com", TOKEN)]
    assert GmailSmtpAdapter.name == "gmail" and GmailSmtpAdapter.capabilities == {"email_sending"}


def test_registry_names() -> None:
    from actors.adapters.registry import get_adapter_class

    assert get_adapter_class("smtp") is SmtpAdapter and get_adapter_class("gmail") is GmailSmtpAdapter


def test_out_of_time_just_before_data_did_not_deliver() -> None:
    server, clock = FakeServer(), Clock(virtual=True)
    server.fail("rcpt", None)
    server.fail("rcpt", taking(clock, 0.1))  # the last recipient eats the time left
    error = send_error(adapter(server, clock=clock), context=ctx(timeout_s=0.05))
    assert isinstance(error, AttemptTimeout) and not error.maybe_delivered and "DATA" in error.message
    assert "data" not in server.commands()


def test_an_unreadable_ca_file_says_so(tmp_path: Any) -> None:
    error = send_error(adapter(FakeServer(), ca_file=str(tmp_path / "missing.pem")))
    assert isinstance(error, TransientError) and "ca_file" in error.message


def test_the_example_config_is_valid() -> None:
    from pathlib import Path

    from actors.config import load_config

    env = {"SMTP_HOST": "smtp.example.com", "SMTP_USERNAME": "bot@example.com", "SMTP_PASSWORD": PASSWORD,
           "SENDGRID_API_KEY": "SG.x", "MAILGUN_API_KEY": "key-x", "MAILGUN_DOMAIN": "mg.example.com",
           "MAIL_FROM": "news@example.com"}
    path = Path(__file__).parents[3] / "config" / "examples" / "email_sending.yaml"
    providers = load_config(path, env=env).capabilities["email_sending"].providers
    assert [p.adapter for p in providers] == ["smtp", "sendgrid", "mailgun"]


def test_values_are_plain_data() -> None:
    import msgspec

    for context in (ctx(), ctx(dry_run=True)):
        value = send(adapter(FakeServer()), context=context)
        assert msgspec.json.decode(msgspec.json.encode(value)) == value
        assert type(value["message_id"]) is str
