"""The imap adapter against a real Dovecot (Debian's dovecot-imapd), started by
the test as the current user with a throwaway config: implicit TLS with a
trustme certificate, a passwd-file user, maildirs seeded with known messages.

Skipped when Dovecot cannot run here; with CI=true these tests fail instead.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from actors.adapters.replies.imap import ImapAdapter
from actors.errors import AuthError, ProviderRejected, RateLimited, TransientError
from actors.payloads import FetchReplies
from tests.adapters.replies.helpers import PASSWORD, USER, ctx, run, seed, start_dovecot

OAUTH_TOKEN = "ya29.dovecot-oauth-3b9f"
MAX_CONNECTIONS = 3
UNSEEN_NEWEST_FIRST = ["<r6@lead.example>", "<r4@lead.example>", "<r3@lead.example>", "<r1@lead.example>"]


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    server = start_dovecot(oauth_tokens={OAUTH_TOKEN: USER}, max_userip_connections=MAX_CONNECTIONS)
    seed(server)
    seed(server, mailbox="Handled")
    yield server
    server.cleanup()


def adapter(server: Any, **over: Any) -> ImapAdapter:
    settings = ImapAdapter.Settings.model_validate(server.adapter_settings(USER, **over))
    return ImapAdapter(settings, capability="reply_fetching", provider="imap")


def fetch(a: ImapAdapter, **payload: Any) -> dict:
    return run(a.call("fetch_replies", FetchReplies(**payload), ctx()))


def ids(value: dict) -> list[str]:
    return [r["message_id"] for r in value["replies"]]


def test_unseen_replies_newest_first_with_every_field(server: Any) -> None:
    value = fetch(adapter(server))
    assert ids(value) == UNSEEN_NEWEST_FIRST  # the two \Seen messages are left out
    replies = {r["message_id"]: r for r in value["replies"]}
    plain = replies["<r1@lead.example>"]
    assert plain == {**plain, "from_addr": "bob@lead.example", "subject": "Re: Hello", "text": "Thanks, sounds good.",
                     "in_reply_to": "<welcome-1@ann.example>", "received_at": "2026-02-01T09:30:05Z"}
    encoded = replies["<r3@lead.example>"]
    assert encoded["subject"] == "Re: Déjà vu — привет" and encoded["from_name"] == "Renée Lefèvre"
    assert encoded["text"] == "Très bien, merci."
    assert replies["<r4@lead.example>"]["text"] == "Yes please!\n\nCall me tomorrow."


def test_a_fetch_marks_nothing_seen(server: Any) -> None:
    before = server.flags(USER)
    first = fetch(adapter(server))
    assert server.flags(USER) == before
    assert [flags for mid, flags in sorted(before.items()) if mid in UNSEEN_NEWEST_FIRST] == ["", "", "", ""]
    assert ids(fetch(adapter(server))) == ids(first)  # idempotent: the same answer again


def test_since_filters_to_the_exact_time_within_the_day(server: Any) -> None:
    # SINCE 31-Jan-2026 finds r1 (09:30:05) too; the exact filter drops it.
    assert ids(fetch(adapter(server), since="2026-02-01T09:45:00Z")) == UNSEEN_NEWEST_FIRST[:3]
    assert ids(fetch(adapter(server), since="2026-02-01T11:00:00+01:00")) == UNSEEN_NEWEST_FIRST[:3]
    assert ids(fetch(adapter(server), since="2026-02-03T12:00:05Z")) == ["<r6@lead.example>"]
    assert ids(fetch(adapter(server), since="2026-02-04T00:00:00Z")) == []


def test_search_all_includes_seen_messages(server: Any) -> None:
    value = fetch(adapter(server, search="all"), since="2026-02-01T00:00:00Z")
    assert ids(value) == ["<r6@lead.example>", "<r5@lead.example>", *UNSEEN_NEWEST_FIRST[1:]]


def test_limit_keeps_the_newest(server: Any) -> None:
    assert ids(fetch(adapter(server, fetch_batch=1), limit=2)) == UNSEEN_NEWEST_FIRST[:2]


def test_another_mailbox_and_a_missing_one(server: Any) -> None:
    assert ids(fetch(adapter(server), mailbox="Handled")) == UNSEEN_NEWEST_FIRST
    with pytest.raises(ProviderRejected, match="'Nowhere' does not exist"):
        fetch(adapter(server), mailbox="Nowhere")


def test_mark_seen_flags_the_returned_replies_and_the_next_unseen_fetch_skips_them(server: Any) -> None:
    a = adapter(server, mark_seen=True)
    value = fetch(a, mailbox="Handled", limit=2)
    assert ids(value) == UNSEEN_NEWEST_FIRST[:2] and value["marked_seen"] is True
    flags = server.flags(USER, "Handled")
    assert "S" in flags["<r6@lead.example>"] and "S" in flags["<r4@lead.example>"]
    assert "S" not in flags["<r3@lead.example>"]
    assert ids(fetch(a, mailbox="Handled")) == UNSEEN_NEWEST_FIRST[2:]


def test_wrong_password_is_an_auth_error_without_the_password(server: Any) -> None:
    with pytest.raises(AuthError) as info:
        fetch(adapter(server, password="not-the-password"))
    assert "AUTHENTICATIONFAILED" in info.value.message and "not-the-password" not in info.value.message


def test_xoauth2_with_a_good_and_a_bad_token(server: Any) -> None:
    good = adapter(server, auth_method="xoauth2", oauth_token=OAUTH_TOKEN, password=None)
    assert ids(fetch(good)) == UNSEEN_NEWEST_FIRST
    bad = adapter(server, auth_method="xoauth2", oauth_token="ya29.expired", password=None)
    with pytest.raises(AuthError) as info:  # Dovecot sends a failure challenge first, as Gmail does
        fetch(bad)
    assert "XOAUTH2 status 401" in info.value.message and "ya29.expired" not in info.value.message


def test_too_many_connections_is_rate_limited(server: Any) -> None:
    import aioimaplib

    async def crowded() -> None:
        context = ssl.create_default_context(cafile=server.ca_file)
        held = []
        try:
            for _ in range(MAX_CONNECTIONS):
                client = aioimaplib.IMAP4_SSL(server.host, server.port, ssl_context=context)
                await client.wait_hello_from_server()
                assert (await client.login(USER, PASSWORD)).result == "OK"
                held.append(client)
            with pytest.raises(RateLimited, match="Maximum number of connections"):
                await adapter(server).call("fetch_replies", FetchReplies(), ctx())
        finally:
            await asyncio.gather(*[c.logout() for c in held], return_exceptions=True)

    run(crowded())


def test_probe_logs_in_and_out(server: Any) -> None:
    run(adapter(server).probe())
    with pytest.raises(AuthError):
        run(adapter(server, password="wrong").probe())


def test_tls_is_verified_by_default(server: Any) -> None:
    with pytest.raises(TransientError, match="certificate verification failed"):
        fetch(adapter(server, ca_file=None))
    unverified = adapter(server, ca_file=None, verify_tls=False)
    assert ids(fetch(unverified)) == UNSEEN_NEWEST_FIRST
    assert unverified.warnings()


def test_a_stopped_server_is_transient() -> None:
    stopped = start_dovecot()
    try:
        stopped.stop()
        with pytest.raises(TransientError, match="connection refused"):
            fetch(adapter(stopped))
        stopped.start()  # and it comes back on the same port
        assert ids(fetch(adapter(stopped))) == []
    finally:
        stopped.cleanup()
