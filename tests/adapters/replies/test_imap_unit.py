"""The imap adapter against a scripted fake client: protocol steps, response
shapes, and the mapping of every failure to our error kinds. No network."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl

import pytest
from pydantic import ValidationError

from actors.adapters.replies.imap import (
    ImapAdapter,
    encode_mailbox,
    imap_date,
    parse_fetch,
    parse_internaldate,
    parse_search,
)
from actors.errors import AttemptTimeout, AuthError, MalformedResponse, ProviderRejected, RateLimited, TransientError
from actors.payloads import FetchReplies
from tests.adapters.replies.helpers import FakeFactory, at, bad, ctx, fetch_lines, message, no, ok, run

PASSWORD = "imap-Pa55-9f3e"
TOKEN = "ya29.imap-token-77aa"
R1 = message(message_id="<r1@lead.example>", date="2026-02-01T09:30:00Z")
R2 = message(message_id="<r2@lead.example>", sender="carol@lead.example", date="2026-02-02T09:30:00Z")


def adapter(factory: FakeFactory, **over) -> ImapAdapter:
    settings = ImapAdapter.Settings.model_validate(
        {"host": "imap.example.com", "username": "ann@example.com", "password": PASSWORD, **over})
    return ImapAdapter(settings, capability="reply_fetching", provider="imap", transport=factory)


def fetch(a: ImapAdapter, timeout_s: float = 10.0, **payload) -> dict:
    return run(a.call("fetch_replies", FetchReplies(**payload), ctx(timeout_s)))


def two_messages() -> FakeFactory:
    return FakeFactory(search=ok(b"1 2", b"Search completed"),
                       fetch=ok(*fetch_lines((2, "02-Feb-2026 09:30:05 +0000", R2), (1, "01-Feb-2026 09:30:05 +0000", R1))))


# --- the protocol steps ---------------------------------------------------------


def test_success_logs_in_selects_searches_unseen_peeks_and_logs_out() -> None:
    factory = two_messages()
    value = fetch(adapter(factory))
    assert factory.connects == [("imap.example.com", 993, 15.0)]
    assert factory.commands() == ["hello", "login", "select", "search", "fetch", "logout"]
    calls = dict(factory.last.calls)
    assert calls["login"] == ("ann@example.com", PASSWORD)
    assert calls["select"] == ('"INBOX"',)
    assert calls["search"] == ("UNSEEN", None)  # charset=None: no CHARSET prefix
    assert calls["fetch"] == ("2,1", "(BODY.PEEK[] INTERNALDATE)")  # PEEK: nothing becomes \Seen
    assert [r["message_id"] for r in value["replies"]] == ["<r2@lead.example>", "<r1@lead.example>"]
    assert value["order"] == "newest_first" and value["marked_seen"] is False
    first = value["replies"][0]
    assert first["received_at"] == "2026-02-02T09:30:05Z" and first["imap_uid"] == 2
    assert first["from_addr"] == "carol@lead.example" and first["in_reply_to"] == "<welcome-1@ann.example>"


def test_since_adds_since_a_day_early_and_filters_by_the_exact_time() -> None:
    factory = two_messages()
    value = fetch(adapter(factory), since="2026-02-01T10:00:00Z")
    assert dict(factory.last.calls)["search"] == ("UNSEEN", "SINCE", "31-Jan-2026", None)
    assert [r["message_id"] for r in value["replies"]] == ["<r2@lead.example>"]  # r1 arrived at 09:30


def test_search_all_without_since_asks_for_all() -> None:
    factory = two_messages()
    fetch(adapter(factory, search="all"))
    assert dict(factory.last.calls)["search"] == ("ALL", None)


def test_limit_takes_the_newest_uids_and_fetches_in_batches() -> None:
    uids = " ".join(str(u) for u in range(1, 8)).encode()

    async def fetch_answer(client):
        uidset = client.calls[-1][1][0]
        return ok(*fetch_lines(*[(int(u), "01-Feb-2026 09:30:05 +0000",
                                  message(message_id=f"<m{u}@x>")) for u in uidset.split(",")]))

    factory = FakeFactory(search=ok(uids, b"Search completed"), fetch=fetch_answer)
    value = fetch(adapter(factory, fetch_batch=2), limit=3)
    fetched = [args[0] for name, args in factory.last.calls if name == "fetch"]
    assert fetched == ["7,6", "5,4"]  # stops once `limit` replies are in hand
    assert [r["imap_uid"] for r in value["replies"]] == [7, 6, 5]


def test_no_unseen_messages_fetches_nothing() -> None:
    factory = FakeFactory(search=ok(b"", b"Search completed"))
    assert fetch(adapter(factory))["replies"] == []
    assert "fetch" not in factory.commands()


def test_payload_mailbox_wins_unless_it_is_the_default_and_names_are_quoted_and_utf7() -> None:
    factory = FakeFactory(search=ok(b"", b"done"))
    fetch(adapter(factory, mailbox="Replies"))
    assert dict(factory.last.calls)["select"] == ('"Replies"',)
    fetch(adapter(factory, mailbox="Replies"), mailbox="Leads/Réponses")
    assert dict(factory.last.calls)["select"] == ('"Leads/R&AOk-ponses"',)


def test_xoauth2_authenticates_with_the_token() -> None:
    factory = two_messages()
    fetch(adapter(factory, auth_method="xoauth2", oauth_token=TOKEN, password=None))
    assert dict(factory.last.calls)["xoauth2"] == ("ann@example.com", TOKEN)


def test_mark_seen_stores_seen_on_the_returned_uids_only() -> None:
    factory = two_messages()
    value = fetch(adapter(factory, mark_seen=True), since="2026-02-01T10:00:00Z")
    assert dict(factory.last.calls)["store"] == ("2", "+FLAGS.SILENT", "(\\Seen)")
    assert value["marked_seen"] is True


def test_a_failed_mark_seen_still_returns_the_replies() -> None:
    factory = two_messages()
    factory.script["store"] = no(b"[SERVERBUG] store failed")
    value = fetch(adapter(factory, mark_seen=True))
    assert len(value["replies"]) == 2 and value["marked_seen"] is False


def test_settings_need_the_credential_of_their_method_and_keep_secrets_secret() -> None:
    with pytest.raises(ValidationError):
        ImapAdapter.Settings.model_validate({"username": "u"})
    with pytest.raises(ValidationError):
        ImapAdapter.Settings.model_validate({"username": "u", "password": "p", "auth_method": "xoauth2"})
    settings = ImapAdapter.Settings.model_validate({"username": "u", "password": PASSWORD})
    assert PASSWORD not in repr(settings) and settings.secret_values() == [PASSWORD]
    assert settings.host == "imap.gmail.com" and settings.port == 993 and settings.verify_tls


# --- error mapping ----------------------------------------------------------------


@pytest.mark.parametrize(("step", "answer", "kind", "words"), [
    ("login", no(b"[AUTHENTICATIONFAILED] Invalid credentials (Failure)"), AuthError, "AUTHENTICATIONFAILED"),
    ("login", no(b"[ALERT] Please log in via your web browser"), AuthError, "web browser"),
    ("login", no(b"[ALERT] Too many simultaneous connections. (Failure)"), RateLimited, "Too many"),
    ("login", no(b"[UNAVAILABLE] Maximum number of connections from user+IP exceeded"), RateLimited, "Maximum"),
    ("login", no(b"[UNAVAILABLE] Temporary authentication failure"), TransientError, "Temporary"),
    ("select", no(b"[NONEXISTENT] Unknown Mailbox: Replies (Failure)"), ProviderRejected, "does not exist"),
    ("select", no(b"Mailbox doesn't exist: Replies"), ProviderRejected, "does not exist"),
    ("select", no(b"[NOPERM] Permission denied"), AuthError, "NOPERM"),
    ("search", no(b"[SERVERBUG] Internal error occurred"), TransientError, "SERVERBUG"),
    ("search", bad(b"Error in IMAP command UID SEARCH: Unknown argument"), ProviderRejected, "Unknown argument"),
    ("search", no(b"[LIMIT] Too many search results"), RateLimited, "LIMIT"),
    ("fetch", no(b"[UNAVAILABLE] Backend down"), TransientError, "Backend down"),
])
def test_tagged_no_and_bad_map_by_response_code_and_words(step, answer, kind, words) -> None:
    factory = two_messages()
    factory.script[step] = answer
    with pytest.raises(kind) as info:
        fetch(adapter(factory, mailbox="Replies"))
    assert words in info.value.message
    assert PASSWORD not in info.value.message
    assert factory.last.calls[-1][0] == "logout"  # the session is always closed


@pytest.mark.parametrize(("exc", "kind"), [
    (ConnectionRefusedError(111, "Connection refused"), TransientError),
    (ConnectionResetError(104, "Connection reset by peer"), TransientError),
    (OSError(113, "No route to host"), TransientError),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), TransientError),
    (asyncio.TimeoutError(), AttemptTimeout),
])
def test_connect_failures(exc, kind) -> None:
    factory = FakeFactory(hello=exc)
    with pytest.raises(kind):
        fetch(adapter(factory))
    assert "login" not in factory.commands()


def test_a_command_that_never_answers_is_a_timeout_within_the_attempts_time() -> None:
    async def hang(client):
        await asyncio.sleep(30)

    factory = two_messages()
    factory.script["fetch"] = hang
    with pytest.raises(AttemptTimeout) as info:
        fetch(adapter(factory), timeout_s=0.2)
    assert "fetch" in info.value.message


def test_a_bye_and_a_dropped_connection_fail_fast_as_rate_limited() -> None:
    async def bye_then_drop(client):
        client.protocol.server_says(b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n")
        client.protocol.drop()
        await asyncio.sleep(30)  # aioimaplib would wait for a tagged answer forever

    factory = two_messages()
    factory.script["select"] = bye_then_drop
    with pytest.raises(RateLimited) as info:
        fetch(adapter(factory), timeout_s=5)
    assert "BYE" in info.value.message and "Too many connections" in info.value.message


def test_a_greeting_bye_is_reported() -> None:
    async def greeting_bye(client):
        client.protocol.server_says(b"* BYE Server shutting down\r\n")

    factory = FakeFactory(hello=greeting_bye)
    with pytest.raises(TransientError, match="shutting down"):
        fetch(adapter(factory))


def test_a_dropped_connection_without_bye_is_transient() -> None:
    async def drop(client):
        client.protocol.drop()
        await asyncio.sleep(30)

    factory = two_messages()
    factory.script["search"] = drop
    with pytest.raises(TransientError, match="closed the connection"):
        fetch(adapter(factory), timeout_s=5)


def test_an_unexpected_answer_object_is_malformed() -> None:
    factory = two_messages()

    async def weird(client):
        return "not a Response"

    factory.script["select"] = weird
    with pytest.raises(MalformedResponse):
        fetch(adapter(factory))


@pytest.mark.parametrize("bug", [AttributeError("'NoneType' object has no attribute 'lines'"),
                                 TypeError("unsupported operand"), KeyError("uid")])
def test_a_bug_of_ours_is_not_blamed_on_the_provider(bug) -> None:
    from actors.errors import ErrorKind
    from actors.adapters.errormap import classify

    async def broken(client):
        raise bug

    factory = two_messages()
    factory.script["select"] = broken
    with pytest.raises(type(bug)) as info:
        fetch(adapter(factory))
    assert classify(info.value)[0] is ErrorKind.CRASHED  # what the provider actor records
    assert factory.last.calls[-1][0] == "logout"        # the session is still closed


def test_an_xoauth2_failure_challenge_is_explained() -> None:
    challenge = base64.b64encode(json.dumps({"status": "400", "schemes": "Bearer",
                                             "scope": "https://mail.google.com/"}).encode())
    factory = FakeFactory(xoauth2=no(b"[AUTHENTICATIONFAILED] Invalid credentials (Failure)"))
    factory.script["xoauth2"] = type(factory.script["xoauth2"])("NO", [b"+ " + challenge,
                                                                     b"[AUTHENTICATIONFAILED] Invalid credentials"])
    with pytest.raises(AuthError) as info:
        fetch(adapter(factory, auth_method="xoauth2", oauth_token=TOKEN, password=None))
    assert "status 400" in info.value.message and TOKEN not in info.value.message


# --- probe and dry run -----------------------------------------------------------------


def test_probe_logs_in_and_noops_without_reading_mail() -> None:
    factory = FakeFactory()
    run(adapter(factory).probe())
    assert factory.commands() == ["hello", "login", "noop", "logout"]


def test_probe_reports_bad_credentials() -> None:
    factory = FakeFactory(login=no(b"[AUTHENTICATIONFAILED] Authentication failed."))
    with pytest.raises(AuthError):
        run(adapter(factory).probe())


def test_dry_run_opens_no_connection_and_shows_the_commands_without_secrets() -> None:
    factory = FakeFactory()
    a = adapter(factory, mark_seen=True)
    value = run(a.call("fetch_replies", FetchReplies(since="2026-02-01T10:00:00Z", limit=5), ctx(dry_run=True)))
    assert factory.clients == []
    assert value["dry_run"] is True and value["delivered"] is False
    commands = value["would_send"]["commands"]
    assert commands[0] == "LOGIN ann@example.com <password removed>"
    assert "UID SEARCH UNSEEN SINCE 31-Jan-2026" in commands and "LOGOUT" == commands[-1]
    assert any("STORE" in c for c in commands)
    assert PASSWORD not in json.dumps(value)


def test_at_most_max_connections_sessions_at_once() -> None:
    active = 0
    peak = 0

    async def slow_select(client):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return ok(b"done")

    factory = FakeFactory(select=slow_select, search=ok(b"", b"done"))
    a = adapter(factory, max_connections=2)

    async def many():
        await asyncio.gather(*[a.call("fetch_replies", FetchReplies(), ctx()) for _ in range(6)])

    run(many())
    assert peak == 2 and len(factory.clients) == 6


# --- response parsing ------------------------------------------------------------------


def test_parse_fetch_reads_literals_in_either_item_order_and_skips_flag_updates() -> None:
    lines = fetch_lines((5, "01-Feb-2026 09:30:05 +0000", R1), date_after_body=True)
    lines.insert(0, b"3 FETCH (FLAGS (\\Seen))")  # an unsolicited update
    records = parse_fetch(lines)
    assert len(records) == 1
    uid, date, raw = records[0]
    assert uid == 5 and date == at("2026-02-01T09:30:05Z") and raw == R1


def test_parse_search_tolerates_prefix_and_unrelated_lines() -> None:
    assert parse_search([b"SEARCH 4 9", b"Search completed"]) == [4, 9]
    assert parse_search([b"1 2 3", b"Search completed"]) == [1, 2, 3]
    assert parse_search([b"", b"Search completed"]) == []
    assert parse_search([b"7 EXISTS", b"5 8", b"done"]) == [5, 8]


def test_internaldate_and_imap_date_are_locale_free() -> None:
    assert parse_internaldate(" 5-Feb-2026 23:10:00 -0200") == at("2026-02-06T01:10:00Z")
    assert parse_internaldate("garbage") is None
    assert imap_date(at("2026-02-05T00:00:00Z")) == "5-Feb-2026"


def test_encode_mailbox_quotes_and_escapes() -> None:
    assert encode_mailbox('A "quoted" \\name') == '"A \\"quoted\\" \\\\name"'
    assert encode_mailbox("R&D") == '"R&-D"'
    assert encode_mailbox("日本語") == '"&ZeVnLIqe-"'  # RFC 3501's own example


def test_an_unreadable_ca_file_is_reported_not_raised() -> None:
    factory = FakeFactory()
    with pytest.raises(TransientError, match="cannot load the CA file"):
        fetch(adapter(factory, ca_file="/nonexistent/ca.pem"))
    assert factory.clients == []


def test_registry_names_and_lazy_client_imports() -> None:
    import subprocess
    import sys

    from actors.adapters.replies.gmail_api import GmailApiAdapter
    from actors.adapters.registry import get_adapter_class

    assert get_adapter_class("imap") is ImapAdapter and get_adapter_class("gmail_api") is GmailApiAdapter
    for cls in (ImapAdapter, GmailApiAdapter):
        assert cls.capabilities == {"reply_fetching"} and cls.has_probe
        assert all(s in cls.Settings.model_fields for s in cls.auth_settings)
        assert cls.Settings.model_fields["verify_tls"].default is True and "ca_file" in cls.Settings.model_fields
    code = ("import sys\n"
            "from actors.adapters.registry import get_adapter_class\n"
            "get_adapter_class('imap'); get_adapter_class('gmail_api')\n"
            "print('aioimaplib' in sys.modules, 'httpx' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
