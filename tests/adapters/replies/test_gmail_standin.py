"""The Gmail API stand-in behaves like Gmail: search terms, pages, Google's
error bodies, the token endpoint; and the adapter works against it end to end."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from actors.adapters.replies.gmail_api import GmailApiAdapter
from actors.errors import AuthError, RateLimited
from actors.payloads import FetchReplies
from actors.sandbox.base import Faults
from tests.adapters.replies.helpers import at, corpus, ctx, run

TOKEN = "test-gmail-token"


@pytest.fixture
def gmail(gmail_sandbox: Any) -> Any:
    stand_in = gmail_sandbox["gmail_api"]
    stand_in.faults = Faults()
    stand_in.received.clear()
    stand_in.reset()
    for item in corpus():
        stand_in.add_message(item.raw, unread=not item.seen, internal_date=item.arrived)
    return stand_in


def get(stand_in: Any, path: str, token: str = TOKEN, **params: Any) -> httpx.Response:
    return httpx.get(stand_in.base_url + path, params=params, headers={"Authorization": f"Bearer {token}"})


def test_list_is_newest_first_and_understands_unread_and_after(gmail: Any) -> None:
    body = get(gmail, "/gmail/v1/users/me/messages", q="in:inbox is:unread").json()
    assert body["resultSizeEstimate"] == 4 and len(body["messages"]) == 4
    dates = [gmail.messages[m["id"]].internal_date_ms for m in body["messages"]]
    assert dates == sorted(dates, reverse=True)
    after = int(at("2026-02-01T12:00:00Z").timestamp())
    body = get(gmail, "/gmail/v1/users/me/messages", q=f"is:unread after:{after}").json()
    assert len(body["messages"]) == 2
    assert get(gmail, "/gmail/v1/users/me/messages", q="label:NoSuchLabel").json() == {"resultSizeEstimate": 0}


def test_pages_and_bad_parameters(gmail: Any) -> None:
    first = get(gmail, "/gmail/v1/users/me/messages", maxResults=4).json()
    assert len(first["messages"]) == 4 and first["nextPageToken"]
    rest = get(gmail, "/gmail/v1/users/me/messages", maxResults=4, pageToken=first["nextPageToken"]).json()
    assert len(rest["messages"]) == 2 and "nextPageToken" not in rest
    bad = get(gmail, "/gmail/v1/users/me/messages", maxResults=501)
    assert bad.status_code == 400 and bad.json()["error"]["errors"][0]["reason"] == "badRequest"


def test_get_raw_is_base64url_of_the_stored_message(gmail: Any) -> None:
    message_id, stored = next(iter(gmail.messages.items()))
    body = get(gmail, f"/gmail/v1/users/me/messages/{message_id}", format="raw").json()
    assert base64.urlsafe_b64decode(body["raw"]) == stored.raw
    assert body["internalDate"] == str(stored.internal_date_ms) and "INBOX" in body["labelIds"]
    missing = get(gmail, "/gmail/v1/users/me/messages/ffff", format="raw")
    assert missing.status_code == 404
    assert missing.json()["error"] == {"code": 404, "message": "Requested entity was not found.", "errors": [
        {"message": "Requested entity was not found.", "domain": "global", "reason": "notFound"}], "status": "NOT_FOUND"}


def test_a_bad_token_gets_googles_401(gmail: Any) -> None:
    answer = get(gmail, "/gmail/v1/users/me/profile", token="wrong")
    assert answer.status_code == 401 and "invalid_token" in answer.headers["WWW-Authenticate"]
    error = answer.json()["error"]
    assert error["status"] == "UNAUTHENTICATED" and error["errors"][0]["reason"] == "authError"


def test_the_token_endpoint_issues_tokens_and_refuses_bad_grants(gmail: Any) -> None:
    form = {"client_id": gmail.client_id, "client_secret": gmail.client_secret,
            "refresh_token": gmail.refresh_token, "grant_type": "refresh_token"}
    issued = httpx.post(gmail.base_url + "/token", data=form).json()
    assert issued["token_type"] == "Bearer" and issued["expires_in"] == 3599
    assert get(gmail, "/gmail/v1/users/me/profile", token=issued["access_token"]).status_code == 200
    refused = httpx.post(gmail.base_url + "/token", data={**form, "refresh_token": "revoked"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    wrong_client = httpx.post(gmail.base_url + "/token", data={**form, "client_secret": "nope"})
    assert wrong_client.status_code == 401 and wrong_client.json()["error"] == "invalid_client"


def test_batch_modify_marks_read(gmail: Any) -> None:
    unread = sorted(gmail.unread_ids())
    answer = httpx.post(gmail.base_url + "/gmail/v1/users/me/messages/batchModify",
                        json={"ids": unread[:1], "removeLabelIds": ["UNREAD"]},
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 204 and gmail.unread_ids() == set(unread[1:])


# --- the adapter against the stand-in -----------------------------------------------------


def adapter(gmail: Any, **over: Any) -> GmailApiAdapter:
    settings = GmailApiAdapter.Settings.model_validate(
        {"base_url": gmail.base_url, "token_url": gmail.base_url + "/token", "access_token": TOKEN, **over})
    return GmailApiAdapter(settings, capability="reply_fetching", provider="gmail")


def test_unread_replies_since_a_time_newest_first(gmail: Any) -> None:
    value = run(adapter(gmail).call("fetch_replies", FetchReplies(since="2026-02-01T09:00:00Z"), ctx()))
    assert [r["message_id"] for r in value["replies"]] == ["<r6@lead.example>", "<r4@lead.example>",
                                                           "<r3@lead.example>", "<r1@lead.example>"]
    by_id = {r["message_id"]: r for r in value["replies"]}
    assert by_id["<r3@lead.example>"]["subject"] == "Re: Déjà vu — привет"
    assert by_id["<r4@lead.example>"]["text"] == "Yes please!\n\nCall me tomorrow."


def test_expired_tokens_are_refreshed_against_the_stand_in(gmail: Any) -> None:
    gmail.revoke_tokens()
    a = adapter(gmail, client_id=gmail.client_id, client_secret=gmail.client_secret, refresh_token=gmail.refresh_token)
    value = run(a.call("fetch_replies", FetchReplies(limit=2), ctx()))
    assert len(value["replies"]) == 2 and gmail.refreshes == 1


def test_reject_auth_and_throttle_knobs(gmail: Any) -> None:
    gmail.faults.update({"reject_auth": True})
    with pytest.raises(AuthError):
        run(adapter(gmail).probe())
    gmail.faults.update({"reject_auth": False, "throttle_for_s": 30, "retry_after_s": 30})
    with pytest.raises(RateLimited) as info:
        run(adapter(gmail).call("fetch_replies", FetchReplies(), ctx()))
    assert 25 <= info.value.retry_after_s <= 30
