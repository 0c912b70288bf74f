"""The Ayrshare adapter against a scripted transport."""

from __future__ import annotations

import pytest

from actors.adapters.social.ayrshare import AyrshareAdapter
from actors.errors import AuthError, MalformedResponse, NotSupported, ProviderRejected, RateLimited, TransientError
from actors.payloads import PublishPost
from tests.adapters.script import Script, answer, build, ctx, raises, run

KEY = "ayr-api-key-77e0b1"
PROFILE = "ayr-profile-key-0c4d"


def posted(*entries: dict, status: str = "success", errors: list | None = None) -> dict:
    return {"status": status, "errors": errors or [], "postIds": list(entries), "id": "RhrbDtYh7hdSMc67zC8H",
            "refId": "b68bdcabb379be2cf1186c1e59544", "post": "Hello"}


LI = {"status": "success", "id": "urn:li:share:7300000000000000009", "platform": "linkedin",
      "postUrl": "https://www.linkedin.com/feed/update/urn:li:share:7300000000000000009"}
TW = {"status": "success", "id": "1288899996423983105", "platform": "twitter",
      "postUrl": "https://twitter.com/ann/status/1288899996423983105"}


def adapter(script: Script, **over) -> AyrshareAdapter:
    return build(AyrshareAdapter, script.transport, **{"api_key": KEY, **over})


def publish(a: AyrshareAdapter, **payload) -> dict:
    return run(a.publish_post(PublishPost(**{"text": "Hello", **payload}), ctx()))


def test_a_post_without_network_goes_to_the_default_network() -> None:
    script = Script(answer(200, posted(LI)))
    value = publish(adapter(script))
    request = script.last
    assert (request.method, request.url.host, request.url.path) == ("POST", "api.ayrshare.com", "/api/post")
    assert request.headers["authorization"] == f"Bearer {KEY}" and "profile-key" not in request.headers
    assert script.body() == {"post": "Hello", "platforms": ["linkedin"]}
    assert value["post_id"] == LI["id"] and value["url"] == LI["postUrl"]
    assert value["posts"] == {"linkedin": {"post_id": LI["id"], "url": LI["postUrl"]}}
    assert value["ayrshare_id"] == "RhrbDtYh7hdSMc67zC8H" and "partial" not in value


def test_x_is_ayrshares_twitter_and_link_and_media_go_along() -> None:
    script = Script(answer(200, posted(TW)))
    value = publish(adapter(script, profile_key=PROFILE), network="x", link="https://e.x/a",
                    media_urls=["https://img.example/1.png"])
    assert script.body() == {"post": "Hello\nhttps://e.x/a", "platforms": ["twitter"],
                             "mediaUrls": ["https://img.example/1.png"]}
    assert script.last.headers["profile-key"] == PROFILE
    assert value["post_id"] == TW["id"] and value["posts"]["x"]["url"] == TW["postUrl"]


def test_a_network_the_profile_has_not_linked_is_not_supported() -> None:
    script = Script(answer(200, posted(TW)))
    raises(NotSupported, adapter(script, networks=["linkedin"]).publish_post(PublishPost(text="x", network="x"), ctx()))
    assert script.requests == []


def test_several_default_networks_answer_with_ayrshares_id_and_each_post() -> None:
    script = Script(answer(200, posted(LI, {**TW, "postUrl": None})))
    value = publish(adapter(script, default_networks=["linkedin", "x"]))
    assert script.body()["platforms"] == ["linkedin", "twitter"]
    assert value["post_id"] == "RhrbDtYh7hdSMc67zC8H" and value["url"] == LI["postUrl"]
    assert value["posts"]["x"]["url"] == f"https://x.com/i/web/status/{TW['id']}"


def test_default_networks_must_be_linked() -> None:
    with pytest.raises(ValueError, match="default_networks"):
        AyrshareAdapter.Settings.model_validate({"api_key": KEY, "networks": ["x"], "default_networks": ["linkedin"]})


def test_a_post_that_reached_some_networks_is_a_partial_success() -> None:
    error = {"action": "post", "status": "error", "code": 110, "message": "Status is a duplicate.", "platform": "twitter"}
    value = publish(adapter(Script(answer(200, posted(LI, status="error", errors=[error]))),
                            default_networks=["linkedin", "x"]))
    assert value["partial"] is True and value["errors"] == ["twitter: Status is a duplicate. (code 110)"]
    assert value["posts"] == {"linkedin": {"post_id": LI["id"], "url": LI["postUrl"]}}


@pytest.mark.parametrize("status", [400, 200])
def test_a_post_no_network_took_is_a_rejection_with_the_networks_words(status: int) -> None:
    error = {"action": "post", "status": "error", "code": 107, "platform": "linkedin",
             "message": "LinkedIn Error: duplicate post detected."}
    err = raises(ProviderRejected, adapter(Script(answer(status, posted(status="error", errors=[error])))).publish_post(
        PublishPost(text="x"), ctx()))
    assert "linkedin: LinkedIn Error: duplicate post detected. (code 107)" in err.message


@pytest.mark.parametrize("status", [401, 403, 402])
def test_401_403_402_are_auth(status: int) -> None:
    body = {"action": "authorization", "status": "error", "code": 102, "message": "API Key not valid."}
    err = raises(AuthError, adapter(Script(answer(status, body))).publish_post(PublishPost(text="x"), ctx()))
    assert "API Key not valid" in err.message and err.status == status


def test_429_waits_the_documented_five_minutes_unless_told_otherwise() -> None:
    body = {"action": "request", "status": "error", "code": 429, "message": "Too many requests."}
    limits = {"x-ratelimit-max": "300", "x-ratelimit-count": "300"}
    err = raises(RateLimited, adapter(Script(answer(429, body, limits))).publish_post(PublishPost(text="x"), ctx()))
    assert err.retry_after_s == 300 and "Too many requests" in err.message
    err = raises(RateLimited, adapter(Script(answer(429, body, {"Retry-After": "12"}))).publish_post(
        PublishPost(text="x"), ctx()))
    assert err.retry_after_s == 12


@pytest.mark.parametrize(("status", "maybe"), [(500, False), (502, False), (504, True)])
def test_5xx_is_transient(status: int, maybe: bool) -> None:
    err = raises(TransientError, adapter(Script(answer(status, {"status": "error", "message": "internal"}))).publish_post(
        PublishPost(text="x"), ctx()))
    assert err.maybe_delivered is maybe


@pytest.mark.parametrize("body", [
    "not json",
    ["a list"],
    {"status": "success", "postIds": "1288899996423983105", "id": "R"},
    {"status": "success", "postIds": [{"status": "success", "platform": "twitter"}], "id": "R"},
    {"status": "success", "postIds": [{"status": "success", "id": True, "platform": "twitter"}], "id": "R"},
])
def test_malformed_success_bodies(body) -> None:
    reply = answer(200, text=body) if isinstance(body, str) else answer(200, body)
    raises(MalformedResponse, adapter(Script(reply)).publish_post(PublishPost(text="x"), ctx()))


def test_dry_run_sends_nothing_and_hides_both_keys() -> None:
    script = Script(answer(200, posted(LI)))
    out = run(adapter(script, profile_key=PROFILE).call("publish_post", PublishPost(text="Hi", network="x"),
                                                        ctx(dry_run=True)))
    assert script.requests == [] and out["would_send"]["json"] == {"post": "Hi", "platforms": ["twitter"]}
    assert KEY not in str(out) and PROFILE not in str(out)


@pytest.mark.parametrize("reply", [answer(401, {"message": "API Key not valid"}), answer(429, {}),
                                   answer(500, text="boom"), answer(400, {"status": "error", "errors": []})])
def test_secrets_never_appear_in_error_messages(reply) -> None:
    with pytest.raises(Exception) as info:
        publish(adapter(Script(reply), profile_key=PROFILE))
    assert KEY not in str(info.value) and PROFILE not in str(info.value)


def test_probe_reads_the_user_and_checks_the_linked_networks() -> None:
    script = Script(answer(200, {"activeSocialAccounts": ["facebook", "linkedin", "twitter"]}))
    run(adapter(script).probe())
    assert (script.last.method, script.last.url.path) == ("GET", "/api/user")
    err = raises(AuthError, adapter(Script(answer(200, {"activeSocialAccounts": ["linkedin"]}))).probe())
    assert "twitter" in err.message and "settings.networks" in err.message
    run(adapter(Script(answer(200, {"activeSocialAccounts": ["linkedin"]})), networks=["linkedin"]).probe())
    raises(AuthError, adapter(Script(answer(200, {}))).probe())  # nothing linked: the key is absent
    raises(AuthError, adapter(Script(answer(401, {"message": "API Key not valid"}))).probe())
    raises(MalformedResponse, adapter(Script(answer(200, {"activeSocialAccounts": "linkedin"}))).probe())
