"""The gmail_api adapter against httpx.MockTransport: request shapes, token
refresh, Google's error bodies mapped to our kinds, malformed answers."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import ValidationError

from actors.adapters.replies.gmail_api import GmailApiAdapter, build_query
from actors.errors import AuthError, MalformedResponse, ProviderRejected, RateLimited, TransientError
from actors.payloads import FetchReplies
from tests.adapters.replies.helpers import at, b64url, ctx, message, run

TOKEN = "ya29.access-4f1c9e"
CLIENT_SECRET = "GOCSPX-client-secret-0b7d"
REFRESH = "1//refresh-token-5e2a"
R1 = message(message_id="<r1@lead.example>", date="2026-02-01T09:30:00Z")
R2 = message(message_id="<r2@lead.example>", sender="carol@lead.example", date="2026-02-02T09:30:00Z")
MS = {"m1": int(at("2026-02-01T09:30:05Z").timestamp() * 1000), "m2": int(at("2026-02-02T09:30:05Z").timestamp() * 1000)}
RAW = {"m1": R1, "m2": R2}


def google_error(code: int, message: str, reason: str, status: str, headers: dict | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason}], "status": status}}
    return httpx.Response(code, json=body, headers=headers)


class Gmail:
    """A scripted Gmail: list answers with `listing`, get answers from RAW; overrides per path."""

    def __init__(self, listing: dict | None = None, **overrides):
        self.listing = listing if listing is not None else {"messages": [{"id": "m2", "threadId": "t2"},
                                                                         {"id": "m1", "threadId": "t1"}],
                                                            "resultSizeEstimate": 2}
        self.overrides = overrides
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        for key, answer in self.overrides.items():
            if key in path:
                answer = answer(request) if callable(answer) else answer
                if answer is not None:
                    return answer
        if path.endswith("/profile"):
            return httpx.Response(200, json={"emailAddress": "ann@example.com", "messagesTotal": 2,
                                             "threadsTotal": 2, "historyId": "1"})
        if path.endswith("/messages"):
            return httpx.Response(200, json=self.listing)
        message_id = path.rsplit("/", 1)[1]
        return httpx.Response(200, json={"id": message_id, "threadId": "t" + message_id[-1], "labelIds": ["INBOX", "UNREAD"],
                                         "internalDate": str(MS[message_id]), "raw": b64url(RAW[message_id]),
                                         "snippet": "", "sizeEstimate": 100, "historyId": "1"})

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def adapter(gmail: Gmail, clock=time.monotonic, **over) -> GmailApiAdapter:
    settings = GmailApiAdapter.Settings.model_validate({"access_token": TOKEN, **over})
    return GmailApiAdapter(settings, capability="reply_fetching", provider="gmail", transport=gmail.transport, clock=clock)


def refreshing(gmail: Gmail, clock=time.monotonic, **over) -> GmailApiAdapter:
    return adapter(gmail, clock, client_id="client-1.apps.googleusercontent.com", client_secret=CLIENT_SECRET,
                   refresh_token=REFRESH, **over)


def fetch(a: GmailApiAdapter, **payload) -> dict:
    return run(a.call("fetch_replies", FetchReplies(**payload), ctx()))


def token_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"access_token": "ya29.fresh-1", "expires_in": 3599, "token_type": "Bearer",
                                     "scope": "https://www.googleapis.com/auth/gmail.readonly"})


# --- requests and values -----------------------------------------------------------


def test_success_lists_then_gets_raw_with_the_bearer_token() -> None:
    gmail = Gmail()
    value = fetch(adapter(gmail))
    listing, *gets = gmail.requests
    assert str(listing.url).startswith("https://gmail.googleapis.com/gmail/v1/users/me/messages?")
    assert dict(listing.url.params) == {"q": "in:inbox is:unread", "maxResults": "50"}
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in gmail.requests)
    assert sorted(r.url.path for r in gets) == ["/gmail/v1/users/me/messages/m1", "/gmail/v1/users/me/messages/m2"]
    assert all(dict(r.url.params) == {"format": "raw"} for r in gets)
    assert [r["message_id"] for r in value["replies"]] == ["<r2@lead.example>", "<r1@lead.example>"]
    first = value["replies"][0]
    assert first["received_at"] == "2026-02-02T09:30:05Z"  # internalDate, not the Date header
    assert first["gmail_id"] == "m2" and first["thread_id"] == "t2" and "UNREAD" in first["labels"]
    assert value["order"] == "newest_first" and value["query"] == "in:inbox is:unread"


def test_since_becomes_after_epoch_seconds_and_is_filtered_exactly() -> None:
    gmail = Gmail()
    value = fetch(adapter(gmail), since="2026-02-01T10:00:00Z")
    assert gmail.requests[0].url.params["q"] == f"in:inbox is:unread after:{int(at('2026-02-01T10:00:00Z').timestamp())}"
    assert [r["gmail_id"] for r in value["replies"]] == ["m2"]  # m1 arrived 09:30, before `since`


def test_query_building() -> None:
    settings = GmailApiAdapter.Settings.model_validate({"access_token": TOKEN, "search": "all", "query": "-from:me"})
    assert build_query(settings, "Lead Replies", None) == "label:Lead-Replies -from:me"
    assert build_query(settings, "inbox", at("1970-01-01T00:01:40Z")) == "in:inbox after:100 -from:me"


def test_nothing_matching_has_no_messages_key() -> None:
    gmail = Gmail(listing={"resultSizeEstimate": 0})
    assert fetch(adapter(gmail))["replies"] == []
    assert len(gmail.requests) == 1


def test_pages_are_followed_until_the_limit() -> None:
    pages = {None: {"messages": [{"id": "m2", "threadId": "t2"}], "nextPageToken": "p2"},
             "p2": {"messages": [{"id": "m1", "threadId": "t1"}], "nextPageToken": "p3"}}

    def listing(request):
        if request.url.path.endswith("/messages"):
            return httpx.Response(200, json=pages[request.url.params.get("pageToken")])
        return None

    gmail = Gmail(messages=listing)
    value = fetch(adapter(gmail), limit=2)
    lists = [r for r in gmail.requests if r.url.path.endswith("/messages")]
    assert [r.url.params.get("pageToken") for r in lists] == [None, "p2"]
    assert [r.url.params["maxResults"] for r in lists] == ["2", "1"]
    assert len(value["replies"]) == 2


def test_a_message_deleted_between_list_and_get_is_skipped() -> None:
    gmail = Gmail(m1=google_error(404, "Requested entity was not found.", "notFound", "NOT_FOUND"))
    assert [r["gmail_id"] for r in fetch(adapter(gmail))["replies"]] == ["m2"]


def test_mark_seen_removes_unread_from_the_returned_messages() -> None:
    gmail = Gmail(batchModify=httpx.Response(204))
    value = fetch(adapter(gmail, mark_seen=True))
    modify = gmail.requests[-1]
    assert modify.method == "POST" and modify.url.path == "/gmail/v1/users/me/messages/batchModify"
    assert json.loads(modify.content) == {"ids": ["m2", "m1"], "removeLabelIds": ["UNREAD"]}
    assert value["marked_seen"] is True


def test_a_failed_mark_seen_still_returns_the_replies() -> None:
    gmail = Gmail(batchModify=google_error(403, "Insufficient Permission", "insufficientPermissions",
                                           "PERMISSION_DENIED"))
    value = fetch(adapter(gmail, mark_seen=True))
    assert len(value["replies"]) == 2 and value["marked_seen"] is False


# --- tokens -------------------------------------------------------------------------


def test_settings_need_a_token_or_the_whole_refresh_trio() -> None:
    with pytest.raises(ValidationError):
        GmailApiAdapter.Settings.model_validate({})
    with pytest.raises(ValidationError):
        GmailApiAdapter.Settings.model_validate({"access_token": TOKEN, "refresh_token": REFRESH})
    settings = GmailApiAdapter.Settings.model_validate({"client_id": "c", "client_secret": CLIENT_SECRET,
                                                        "refresh_token": REFRESH})
    assert settings.base_url == "https://gmail.googleapis.com"
    assert settings.token_url == "https://oauth2.googleapis.com/token"
    assert CLIENT_SECRET not in repr(settings) and REFRESH not in repr(settings)


def test_without_an_access_token_one_is_fetched_first_with_the_refresh_grant() -> None:
    gmail = Gmail(token=token_ok)
    settings = GmailApiAdapter.Settings.model_validate({"client_id": "client-1", "client_secret": CLIENT_SECRET,
                                                        "refresh_token": REFRESH})
    a = GmailApiAdapter(settings, capability="reply_fetching", provider="gmail", transport=gmail.transport)
    fetch(a)
    token_request = gmail.requests[0]
    assert str(token_request.url) == "https://oauth2.googleapis.com/token" and token_request.method == "POST"
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token_request.content.decode()) == {"client_id": ["client-1"], "client_secret": [CLIENT_SECRET],
                                                        "refresh_token": [REFRESH], "grant_type": ["refresh_token"]}
    assert all(r.headers["Authorization"] == "Bearer ya29.fresh-1" for r in gmail.requests[1:])
    fetch(a)
    assert gmail.paths().count("/token") == 1  # cached until it nears expiry


def test_a_401_refreshes_once_and_retries() -> None:
    def expired(request):
        if request.headers["Authorization"] == f"Bearer {TOKEN}":
            return google_error(401, "Invalid Credentials", "authError", "UNAUTHENTICATED")
        return None

    gmail = Gmail(token=token_ok, messages=expired)
    value = fetch(refreshing(gmail))
    assert gmail.paths()[:3] == ["/gmail/v1/users/me/messages", "/token", "/gmail/v1/users/me/messages"]
    assert len(value["replies"]) == 2


def test_a_token_near_expiry_is_refreshed_before_use() -> None:
    now = [1000.0]
    gmail = Gmail(token=token_ok)
    a = refreshing(gmail, clock=lambda: now[0])
    a._token = None  # start from a refresh so the expiry is known
    fetch(a)
    now[0] += 3599 - 30  # within the refresh margin
    fetch(a)
    assert gmail.paths().count("/token") == 2


def test_a_refused_refresh_is_an_auth_error_without_secrets() -> None:
    gmail = Gmail(token=httpx.Response(400, json={"error": "invalid_grant", "error_description": "Bad Request"}),
                  messages=google_error(401, "Invalid Credentials", "authError", "UNAUTHENTICATED"))
    with pytest.raises(AuthError) as info:
        fetch(refreshing(gmail))
    assert "invalid_grant" in info.value.message
    for secret in (TOKEN, CLIENT_SECRET, REFRESH):
        assert secret not in info.value.message


def test_a_refresh_answer_without_a_token_is_malformed() -> None:
    gmail = Gmail(token=httpx.Response(200, json={"token_type": "Bearer"}),
                  messages=google_error(401, "Invalid Credentials", "authError", "UNAUTHENTICATED"))
    with pytest.raises(MalformedResponse):
        fetch(refreshing(gmail))


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "kind", "retry_after"), [
    (google_error(401, "Invalid Credentials", "authError", "UNAUTHENTICATED"), AuthError, None),
    (google_error(403, "Request had insufficient authentication scopes.", "insufficientPermissions",
                  "PERMISSION_DENIED"), AuthError, None),
    (google_error(403, "Domain policy has denied access", "domainPolicy", "PERMISSION_DENIED"), AuthError, None),
    (google_error(403, "User Rate Limit Exceeded", "userRateLimitExceeded", "PERMISSION_DENIED"), RateLimited, None),
    (google_error(403, "Rate Limit Exceeded", "rateLimitExceeded", "PERMISSION_DENIED"), RateLimited, None),
    (google_error(429, "Too many concurrent requests for user", "rateLimitExceeded", "RESOURCE_EXHAUSTED",
                  {"Retry-After": "7"}), RateLimited, 7.0),
    (google_error(500, "Backend Error", "backendError", "INTERNAL"), TransientError, None),
    (google_error(503, "The service is currently unavailable.", "backendError", "UNAVAILABLE"), TransientError, None),
    (google_error(400, "Invalid query", "invalidArgument", "INVALID_ARGUMENT"), ProviderRejected, None),
])
def test_google_errors_map_to_our_kinds(answer, kind, retry_after) -> None:
    gmail = Gmail(messages=answer)
    with pytest.raises(kind) as info:
        fetch(adapter(gmail))
    assert info.value.retry_after_s == retry_after
    assert info.value.status == answer.status_code
    assert answer.json()["error"]["message"] in info.value.message
    assert TOKEN not in info.value.message


def test_a_429_retry_time_in_the_message_is_read() -> None:
    reset = time.time() + 42
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(reset))
    gmail = Gmail(messages=google_error(429, f"User-rate limit exceeded.  Retry after {stamp}", "rateLimitExceeded",
                                        "RESOURCE_EXHAUSTED"))
    with pytest.raises(RateLimited) as info:
        fetch(adapter(gmail))
    assert 35 <= info.value.retry_after_s <= 43


def test_a_failing_get_fails_the_fetch() -> None:
    gmail = Gmail(m1=google_error(500, "Backend Error", "backendError", "INTERNAL"))
    with pytest.raises(TransientError):
        fetch(adapter(gmail))


def test_connection_errors_are_transient() -> None:
    def refuse(request):
        raise httpx.ConnectError("connection refused")

    gmail = Gmail(messages=refuse)
    with pytest.raises(TransientError, match="cannot connect"):
        fetch(adapter(gmail))


@pytest.mark.parametrize(("path", "answer", "words"), [
    ("messages", httpx.Response(200, text="<html>proxy</html>"), "expected JSON"),
    ("messages", httpx.Response(200, json=[1, 2]), "not an object"),
    ("messages", httpx.Response(200, json={"messages": {"id": "m1"}}), "`messages` is dict"),
    ("messages", httpx.Response(200, json={"messages": [{"threadId": "t"}]}), "without an `id`"),
    ("m1", httpx.Response(200, json={"id": "m1", "internalDate": "1"}), "no `raw`"),
    ("m1", httpx.Response(200, json={"id": "m1", "raw": "!!!not base64!!!"}), "not base64url"),
])
def test_malformed_answers(path, answer, words) -> None:
    gmail = Gmail(**{path: answer})
    with pytest.raises(MalformedResponse, match=words):
        fetch(adapter(gmail))


@pytest.mark.parametrize("hostile", ["../../admin/x", "..", "m1/../../../oauth2/v1/userinfo", "m1?alt=media",
                                     "m1#x", "%2e%2e%2fadmin", "m 1", ""])
def test_a_listed_id_that_is_not_a_message_id_never_reaches_a_url(hostile) -> None:
    gmail = Gmail(listing={"messages": [{"id": "m1", "threadId": "t1"}, {"id": hostile, "threadId": "t2"}]})
    with pytest.raises(MalformedResponse, match="not a Gmail message id"):
        fetch(adapter(gmail))
    # Only the listing was asked, with the token: nothing went to another path.
    assert gmail.paths() == ["/gmail/v1/users/me/messages"]


def test_an_unreadable_internal_date_falls_back_to_the_date_header() -> None:
    gmail = Gmail(m1=httpx.Response(200, json={"id": "m1", "internalDate": "soon", "raw": b64url(R1)}))
    replies = {r["gmail_id"]: r for r in fetch(adapter(gmail))["replies"]}
    assert replies["m1"]["received_at"] == "2026-02-01T09:30:00Z"


# --- probe and dry run -------------------------------------------------------------------


def test_probe_reads_the_profile_only() -> None:
    gmail = Gmail()
    run(adapter(gmail).probe())
    assert gmail.paths() == ["/gmail/v1/users/me/profile"]


def test_probe_reports_a_bad_token_and_a_malformed_profile() -> None:
    with pytest.raises(AuthError):
        run(adapter(Gmail(profile=google_error(401, "Invalid Credentials", "authError", "UNAUTHENTICATED"))).probe())
    with pytest.raises(MalformedResponse):
        run(adapter(Gmail(profile=httpx.Response(200, json={"historyId": "1"}))).probe())


def test_dry_run_sends_nothing_and_hides_secrets() -> None:
    gmail = Gmail()
    a = refreshing(gmail, access_token=None, mark_seen=True)
    value = run(a.call("fetch_replies", FetchReplies(since="2026-02-01T10:00:00Z", limit=5), ctx(dry_run=True)))
    assert gmail.requests == []
    assert value["dry_run"] is True and value["delivered"] is False
    methods = [(r["method"], r["url"].rsplit("/", 1)[-1]) for r in value["would_send"]["requests"]]
    assert methods == [("POST", "token"), ("GET", "messages"), ("GET", "{id}"), ("POST", "batchModify")]
    text = json.dumps(value)
    for secret in (CLIENT_SECRET, REFRESH):
        assert secret not in text


def test_close_closes_the_client() -> None:
    gmail = Gmail()
    a = adapter(gmail)
    fetch(a)
    client = a._client
    run(a.close())
    assert client.is_closed and a._client is None


def test_an_empty_access_token_from_the_environment_means_none() -> None:
    settings = GmailApiAdapter.Settings.model_validate({"access_token": "", "client_id": "c",
                                                        "client_secret": CLIENT_SECRET, "refresh_token": REFRESH})
    assert settings.access_token is None
    with pytest.raises(ValidationError):
        GmailApiAdapter.Settings.model_validate({"access_token": ""})


def test_ca_file_is_trusted_for_tls(tmp_path) -> None:
    """Against the stand-in served over TLS with a throwaway CA: trusted with
    `ca_file`, refused without it (verification is on by default)."""
    import ssl

    import trustme
    from aiohttp import web

    from actors.sandbox.gmail_api import GmailApiStandIn

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    stand_in = GmailApiStandIn(access_token=TOKEN)

    async def scenario() -> None:
        runner = web.AppRunner(stand_in.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
        await site.start()
        base = f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        try:
            trusted = GmailApiAdapter(GmailApiAdapter.Settings.model_validate(
                {"access_token": TOKEN, "base_url": base, "ca_file": str(tmp_path / "ca.pem")}),
                capability="reply_fetching", provider="gmail")
            await trusted.probe()
            await trusted.close()
            untrusted = GmailApiAdapter(GmailApiAdapter.Settings.model_validate(
                {"access_token": TOKEN, "base_url": base}), capability="reply_fetching", provider="gmail")
            with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusted.probe()
            await untrusted.close()
        finally:
            await runner.cleanup()

    run(scenario())
    with pytest.raises(TransientError, match="cannot load the CA file"):
        adapter(Gmail(), ca_file=str(tmp_path / "missing.pem")).http


def test_concurrent_calls_share_one_refresh() -> None:
    import asyncio

    gmail = Gmail(token=token_ok)
    settings = GmailApiAdapter.Settings.model_validate({"client_id": "c", "client_secret": CLIENT_SECRET,
                                                        "refresh_token": REFRESH})
    a = GmailApiAdapter(settings, capability="reply_fetching", provider="gmail", transport=gmail.transport)

    async def together():
        return await asyncio.gather(*[a.call("fetch_replies", FetchReplies(), ctx()) for _ in range(5)])

    assert all(len(v["replies"]) == 2 for v in run(together()))
    assert gmail.paths().count("/token") == 1
