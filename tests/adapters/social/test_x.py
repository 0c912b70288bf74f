"""The X adapter against a scripted transport; X's weighted length and rate-limit headers as pure functions."""

from __future__ import annotations

import pytest

from actors.adapters.social.x import XAdapter, weighted_length, x_retry_after
from actors.errors import AuthError, MalformedResponse, NotSupported, ProviderRejected, RateLimited, TransientError
from actors.payloads import PublishPost
from tests.adapters.script import Script, answer, ctx, raises, run

TOKEN = "x-user-token-8c1d0e"
NOW = 1_800_000_000.0
PROBLEM = "application/problem+json"
CREATED = answer(201, {"data": {"id": "1445880548472328192", "text": "Hello"}})


def adapter(script: Script, **over) -> XAdapter:
    settings = XAdapter.Settings.model_validate({"access_token": TOKEN, **over})
    return XAdapter(settings, capability="social_posting", provider="x", transport=script.transport, clock=lambda: NOW)


def publish(a: XAdapter, **payload) -> dict:
    return run(a.publish_post(PublishPost(**{"text": "Hello", **payload}), ctx()))


def test_a_post_is_post_2_tweets_with_the_user_token() -> None:
    script = Script(CREATED)
    value = publish(adapter(script))
    request = script.last
    assert (request.method, request.url.host, request.url.path) == ("POST", "api.x.com", "/2/tweets")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert script.body() == {"text": "Hello"}
    assert value == {"post_id": "1445880548472328192", "url": "https://x.com/i/web/status/1445880548472328192"}


def test_a_link_is_appended_and_media_is_skipped_and_said_so() -> None:
    script = Script(CREATED)
    value = publish(adapter(script), link="https://example.com/a", media_urls=["https://img.example/1.png"])
    assert script.body() == {"text": "Hello\nhttps://example.com/a"}
    assert value["skipped_media"] == ["https://img.example/1.png"] and "upload" in value["note"]


@pytest.mark.parametrize(("text", "length"), [
    ("hello", 5),
    ("é" * 10, 10),                      # Latin-1: weight 1
    ("日本語", 6),                        # CJK: weight 2
    ("🙂", 2),                            # an emoji: weight 2
    ("see https://example.com/a/very/long/path?with=query", 4 + 23),
    ("e\u0301", 1),                       # NFC: e + combining acute is one é
])
def test_weighted_length_counts_as_x_does(text: str, length: int) -> None:
    assert weighted_length(text) == length


def test_text_over_the_limit_is_refused_before_sending() -> None:
    script = Script(CREATED)
    err = raises(ProviderRejected, adapter(script).publish_post(PublishPost(text="日" * 141), ctx()))
    assert "282" in err.message and "280" in err.message and script.requests == []
    assert publish(adapter(script), text="日" * 140)["post_id"]  # exactly 280
    assert publish(adapter(script, max_length=25_000), text="a" * 1000)["post_id"]  # a longer-post account


def test_401_is_auth_and_says_user_tokens_expire() -> None:
    err = raises(AuthError, adapter(Script(answer(401, {"title": "Unauthorized", "type": "about:blank", "status": 401,
                                                        "detail": "Unauthorized"}, content_type=PROBLEM))).publish_post(
        PublishPost(text="x"), ctx()))
    assert "2 hours" in err.message and err.status == 401


def test_403_duplicate_is_a_rejection_and_other_403s_are_auth() -> None:
    dup = answer(403, {"detail": "You are not allowed to create a Tweet with duplicate content.", "type": "about:blank",
                       "title": "Forbidden", "status": 403}, content_type=PROBLEM)
    err = raises(ProviderRejected, adapter(Script(dup)).publish_post(PublishPost(text="x"), ctx()))
    assert "duplicate content" in err.message
    scope = answer(403, {"title": "Forbidden", "type": "about:blank", "status": 403,
                         "detail": "You are not permitted to perform this action."}, content_type=PROBLEM)
    err = raises(AuthError, adapter(Script(scope)).publish_post(PublishPost(text="x"), ctx()))
    assert "tweet.write" in err.message


def test_429_waits_until_x_rate_limit_reset() -> None:
    throttled = answer(429, {"title": "Too Many Requests", "detail": "Too Many Requests", "status": 429,
                             "type": "https://api.x.com/2/problems/rate-limit-exceeded"}, content_type=PROBLEM,
                       headers={"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0",
                                "x-rate-limit-reset": str(int(NOW + 600))})
    err = raises(RateLimited, adapter(Script(throttled)).publish_post(PublishPost(text="x"), ctx()))
    assert err.retry_after_s == 600 and "Too Many Requests" in err.message


def test_429_with_the_legacy_body_and_the_daily_cap_spent_waits_for_the_daily_reset() -> None:
    throttled = answer(429, {"errors": [{"code": 88, "message": "Rate limit exceeded"}]}, headers={
        "x-rate-limit-remaining": "37", "x-rate-limit-reset": str(int(NOW + 300)),
        "x-user-limit-24hour-limit": "100", "x-user-limit-24hour-remaining": "0",
        "x-user-limit-24hour-reset": str(int(NOW + 20_000))})
    err = raises(RateLimited, adapter(Script(throttled)).publish_post(PublishPost(text="x"), ctx()))
    assert err.retry_after_s == 20_000 and "Rate limit exceeded" in err.message


@pytest.mark.parametrize(("headers", "wait"), [
    ({}, None),
    ({"retry-after": "7"}, 7),
    ({"x-rate-limit-reset": str(int(NOW + 90)), "x-rate-limit-remaining": "3"}, 90),
    ({"x-rate-limit-reset": str(int(NOW - 5)), "x-rate-limit-remaining": "0"}, 0),
    ({"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(NOW + 60)),
      "x-app-limit-24hour-remaining": "0", "x-app-limit-24hour-reset": str(int(NOW + 3600))}, 3600),
    ({"x-rate-limit-remaining": "0", "x-rate-limit-reset": "soon"}, None),
])
def test_x_retry_after_takes_the_latest_exhausted_window(headers: dict, wait: float | None) -> None:
    assert x_retry_after(headers, NOW) == wait


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_transient(status: int) -> None:
    err = raises(TransientError, adapter(Script(answer(status, {"title": "Service Unavailable", "status": status},
                                                       content_type=PROBLEM))).publish_post(PublishPost(text="x"),
                                                                                            ctx()))
    assert err.status == status


def test_400_is_a_rejection_with_the_providers_words() -> None:
    invalid = answer(400, {"title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
                           "type": "https://api.x.com/2/problems/invalid-request",
                           "errors": [{"message": "Your Tweet text is too long."}]}, content_type=PROBLEM)
    err = raises(ProviderRejected, adapter(Script(invalid)).publish_post(PublishPost(text="x"), ctx()))
    assert "too long" in err.message


@pytest.mark.parametrize("reply", [
    answer(201, text="created!"),                          # not JSON
    answer(201, {"id": "1"}),                              # no data
    answer(201, {"data": {"text": "Hello"}}),              # no id
    answer(201, {"data": {"id": 1445880548472328192}}),    # id of the wrong type
    answer(201, {"data": []}),
])
def test_malformed_success_bodies(reply) -> None:
    raises(MalformedResponse, adapter(Script(reply)).publish_post(PublishPost(text="x"), ctx()))


def test_a_post_for_linkedin_is_not_supported_and_sends_nothing() -> None:
    script = Script(CREATED)
    raises(NotSupported, adapter(script).publish_post(PublishPost(text="x", network="linkedin"), ctx()))
    assert script.requests == []


def test_dry_run_sends_nothing_and_hides_the_token() -> None:
    script = Script(CREATED)
    out = run(adapter(script).call("publish_post", PublishPost(text="Hi", link="https://e.x"), ctx(dry_run=True)))
    assert script.requests == [] and out["would_send"]["json"] == {"text": "Hi\nhttps://e.x"}
    assert TOKEN not in str(out)


@pytest.mark.parametrize("reply", [answer(401, {"detail": "Unauthorized"}), answer(429, {}),
                                   answer(503, {"detail": "down"}), answer(400, {"detail": "bad"})])
def test_secrets_never_appear_in_error_messages(reply) -> None:
    with pytest.raises(Exception) as info:
        publish(adapter(Script(reply)))
    assert TOKEN not in str(info.value)


def test_probe_reads_users_me() -> None:
    script = Script(answer(200, {"data": {"id": "2244994945", "name": "Ann", "username": "ann"}}))
    run(adapter(script).probe())
    assert (script.last.method, script.last.url.path) == ("GET", "/2/users/me")
    raises(AuthError, adapter(Script(answer(401, {"detail": "Unauthorized"}))).probe())
    raises(MalformedResponse, adapter(Script(answer(200, {"data": {}}))).probe())
    err = raises(RateLimited, adapter(Script(answer(429, {}, headers={"x-rate-limit-remaining": "0",
                                                                   "x-rate-limit-reset": str(int(NOW + 30))}))).probe())
    assert err.retry_after_s == 30
