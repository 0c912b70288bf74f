"""The LinkedIn adapter against a scripted transport: request shape, reply mapping, dry run, probe."""

from __future__ import annotations

import httpx
import pytest

from actors.adapters.social.linkedin import LinkedInAdapter, escape_little
from actors.errors import AuthError, MalformedResponse, NotSupported, ProviderRejected, RateLimited, TransientError
from actors.payloads import PublishPost
from tests.adapters.script import Script, answer, build, ctx, raises, run

TOKEN = "li-secret-token-5f2a9c"
PERSON = "urn:li:person:abc123"
ORG = "urn:li:organization:2414183"
CREATED = answer(201, headers={"x-restli-id": "urn:li:share:7300000000000000001"})


def adapter(script: Script, **over) -> LinkedInAdapter:
    return build(LinkedInAdapter, script.transport, **{"access_token": TOKEN, "author": PERSON, **over})


def publish(a: LinkedInAdapter, **payload) -> dict:
    return run(a.publish_post(PublishPost(**{"text": "Hello", **payload}), ctx()))


def test_a_text_post_is_the_documented_request_and_the_urn_comes_from_x_restli_id() -> None:
    script = Script(CREATED)
    value = publish(adapter(script), text="Hello world")
    request = script.last
    assert (request.method, request.url.path, request.url.host) == ("POST", "/rest/posts", "api.linkedin.com")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["linkedin-version"] == "202601"
    assert request.headers["x-restli-protocol-version"] == "2.0.0"
    assert script.body() == {
        "author": PERSON, "commentary": "Hello world", "visibility": "PUBLIC",
        "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
        "lifecycleState": "PUBLISHED", "isReshareDisabledByAuthor": False}
    assert value == {"post_id": "urn:li:share:7300000000000000001", "duplicate": False,
                     "url": "https://www.linkedin.com/feed/update/urn:li:share:7300000000000000001/"}


def test_version_and_organization_author_are_settings() -> None:
    script = Script(CREATED)
    publish(adapter(script, author=ORG, version="202606", visibility="LOGGED_IN"))
    assert script.last.headers["linkedin-version"] == "202606"
    assert script.body()["author"] == ORG and script.body()["visibility"] == "LOGGED_IN"


def test_a_link_is_an_article_and_images_are_skipped_and_said_so() -> None:
    script = Script(CREATED)
    value = publish(adapter(script), link="https://example.com/a", media_urls=["https://img.example/1.png"])
    assert script.body()["content"] == {"article": {"source": "https://example.com/a", "title": "https://example.com/a"}}
    assert value["skipped_media"] == ["https://img.example/1.png"] and "Images API" in value["note"]


def test_plain_commentary_escapes_little_format_characters_but_keeps_hashtags() -> None:
    assert escape_little("Hi (all) @bob [x] #AI a_b *c* ~d~ <e> {f} | \\") == \
        "Hi \\(all\\) \\@bob \\[x\\] #AI a\\_b \\*c\\* \\~d\\~ \\<e\\> \\{f\\} \\| \\\\"
    script = Script(CREATED, CREATED)
    publish(adapter(script), text="Hello @[Acme](urn:li:organization:1)")
    assert script.body()["commentary"] == "Hello \\@\\[Acme\\]\\(urn:li:organization:1\\)"
    publish(adapter(script, commentary_format="little"), text="Hello @[Acme](urn:li:organization:1)")
    assert script.body()["commentary"] == "Hello @[Acme](urn:li:organization:1)"


def test_duplicate_post_is_already_posted_and_names_the_first_post() -> None:
    duplicate = answer(422, {
        "errorDetailType": "com.linkedin.common.error.BadRequest",
        "message": "Resource level validation failed. Content is a duplicate of urn:li:share:7111111111111111111",
        "errorDetails": {"inputErrors": [{"description": "Duplicate post is detected", "input": {},
                                          "code": "DUPLICATE_POST"}]},
        "status": 422})
    value = publish(adapter(Script(duplicate)))
    assert value == {"post_id": "urn:li:share:7111111111111111111", "duplicate": True,
                     "url": "https://www.linkedin.com/feed/update/urn:li:share:7111111111111111111/"}
    assert "publish_post" in LinkedInAdapter.resends_deduplicated


def test_401_is_auth() -> None:
    err = raises(AuthError, adapter(Script(answer(401, {"status": 401, "serviceErrorCode": 65600,
                                                        "code": "INVALID_ACCESS_TOKEN",
                                                        "message": "Invalid access token"}))).publish_post(
        PublishPost(text="x"), ctx()))
    assert "Invalid access token" in err.message and "access_token" in err.message


@pytest.mark.parametrize(("author", "permission"), [(PERSON, "w_member_social"), (ORG, "w_organization_social")])
def test_403_is_auth_naming_the_missing_permission(author: str, permission: str) -> None:
    denied = answer(403, {"status": 403, "serviceErrorCode": 100, "code": "ACCESS_DENIED",
                          "message": "Not enough permissions to access: partnerApiPostsExternal.CREATE.20260101"})
    err = raises(AuthError, adapter(Script(denied), author=author).publish_post(PublishPost(text="x"), ctx()))
    assert permission in err.message and "Not enough permissions" in err.message and err.status == 403


def test_429_names_no_wait_unless_a_retry_after_is_sent() -> None:
    throttled = {"status": 429, "serviceErrorCode": 101,
                 "message": "Resource level throttle limit for calls to this resource is reached."}
    err = raises(RateLimited, adapter(Script(answer(429, throttled))).publish_post(PublishPost(text="x"), ctx()))
    assert err.retry_after_s is None and "throttle limit" in err.message
    err = raises(RateLimited, adapter(Script(answer(429, throttled, {"Retry-After": "42"}))).publish_post(
        PublishPost(text="x"), ctx()))
    assert err.retry_after_s == 42


@pytest.mark.parametrize(("status", "maybe"), [(500, False), (503, False), (504, True)])
def test_5xx_is_transient(status: int, maybe: bool) -> None:
    err = raises(TransientError, adapter(Script(answer(status, text="upstream"))).publish_post(
        PublishPost(text="x"), ctx()))
    assert err.status == status and err.maybe_delivered is maybe


@pytest.mark.parametrize("status", [400, 422])
def test_400_and_422_are_rejections_with_the_providers_message(status: int) -> None:
    body = {"status": status, "code": "ILLEGAL_ARGUMENT", "message": "Field /commentary exceeds 3000 characters"}
    err = raises(ProviderRejected, adapter(Script(answer(status, body))).publish_post(PublishPost(text="x"), ctx()))
    assert "exceeds 3000 characters" in err.message


@pytest.mark.parametrize("reply", [
    answer(201),                                                  # no x-restli-id
    answer(201, headers={"x-restli-id": "7300000000000000001"}),  # not a URN
])
def test_a_created_reply_without_a_post_urn_is_malformed(reply: httpx.Response) -> None:
    raises(MalformedResponse, adapter(Script(reply)).publish_post(PublishPost(text="x"), ctx()))


def test_a_post_for_another_network_is_not_supported_and_sends_nothing() -> None:
    script = Script(CREATED)
    raises(NotSupported, adapter(script).publish_post(PublishPost(text="x", network="x"), ctx()))
    assert publish(adapter(script), network="linkedin")["duplicate"] is False
    assert len(script.requests) == 1


def test_dry_run_shows_the_request_without_the_token_and_sends_nothing() -> None:
    script = Script(CREATED)
    a = adapter(script)
    out = run(a.call("publish_post", PublishPost(text="Hello", link="https://e.x/a"), ctx(dry_run=True)))
    assert script.requests == []
    assert out["dry_run"] is True and out["delivered"] is False
    assert out["would_send"]["headers"]["Authorization"] == "***" and TOKEN not in str(out)
    assert out["would_send"]["json"]["content"]["article"]["source"] == "https://e.x/a"


@pytest.mark.parametrize("reply", [
    answer(401, {"message": "Invalid access token"}), answer(403, {"message": "denied"}), answer(429, {}),
    answer(500, text="boom"), answer(422, {"message": "bad"}), answer(201),
    httpx.ConnectError("connection refused"), httpx.ReadTimeout("timed out"),
])
def test_secrets_never_appear_in_error_messages(reply) -> None:
    with pytest.raises(Exception) as info:
        publish(adapter(Script(reply)))
    assert TOKEN not in str(info.value) and TOKEN not in getattr(info.value, "message", "")


def test_probe_reads_userinfo_with_the_token() -> None:
    script = Script(answer(200, {"sub": "abc123", "name": "Ann"}))
    run(adapter(script).probe())
    assert (script.last.method, script.last.url.path) == ("GET", "/v2/userinfo")
    assert script.last.headers["authorization"] == f"Bearer {TOKEN}"


def test_probe_failures_say_what_to_check() -> None:
    err = raises(AuthError, adapter(Script(answer(403, {"message": "Not enough permissions"}))).probe())
    assert "openid" in err.message and "probe_path" in err.message
    raises(AuthError, adapter(Script(answer(401, {"message": "expired"}))).probe())
    raises(MalformedResponse, adapter(Script(answer(200, text="<html>"))).probe())
    script = Script(answer(200, {"id": "x"}))
    run(adapter(script, probe_path="/v2/me").probe())
    assert script.last.url.path == "/v2/me"


def test_settings_refuse_a_bad_author_or_version() -> None:
    with pytest.raises(ValueError):
        LinkedInAdapter.Settings.model_validate({"access_token": TOKEN, "author": "abc123"})
    with pytest.raises(ValueError):
        LinkedInAdapter.Settings.model_validate({"access_token": TOKEN, "author": PERSON, "version": "2026-01"})


def test_a_duplicate_that_names_no_post_is_still_already_posted() -> None:
    duplicate = answer(422, {"message": "Content is a duplicate", "status": 422,
                             "errorDetails": {"inputErrors": [{"code": "DUPLICATE_POST"}]}})
    assert publish(adapter(Script(duplicate))) == {"post_id": None, "url": None, "duplicate": True}
