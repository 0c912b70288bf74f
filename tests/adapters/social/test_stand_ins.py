"""The social_posting stand-ins (LinkedIn, X, Ayrshare) behave like their providers, and the adapters talk
to them over real loopback HTTP (no Ray)."""

from __future__ import annotations


import httpx
import pytest

from actors.adapters.social.ayrshare import AyrshareAdapter
from actors.adapters.social.linkedin import LinkedInAdapter
from actors.adapters.social.x import XAdapter
from actors.errors import AuthError, ProviderRejected, RateLimited
from actors.payloads import PublishPost
from tests.adapters.script import build, ctx, raises, reset_all, run


@pytest.fixture
def sb(sandbox):
    reset_all(sandbox)
    return sandbox


def post(adapter, text: str = "Hello", **kw) -> dict:
    return run(adapter.publish_post(PublishPost(text=text, **kw), ctx()))


# --- LinkedIn -------------------------------------------------------------------
def test_linkedin_publishes_then_answers_the_same_post_as_a_duplicate(sb) -> None:
    li = sb["linkedin"]
    adapter = build(LinkedInAdapter, **li.adapter_settings())

    async def twice_then_probe() -> tuple[dict, dict]:
        payload = PublishPost(text="Launch day (finally) #news")
        first, again = await adapter.publish_post(payload, ctx()), await adapter.publish_post(payload, ctx())
        await adapter.probe()
        await adapter.close()
        return first, again

    first, again = run(twice_then_probe())
    assert first["post_id"] in li.posts and first["duplicate"] is False
    assert li.posts[first["post_id"]]["commentary"] == "Launch day \\(finally\\) #news"
    assert again == {**first, "duplicate": True} and len(li.posts) == 1


def test_linkedin_checks_the_version_and_protocol_headers(sb) -> None:
    url = sb.url("linkedin") + "/rest/posts"
    auth = {"Authorization": f"Bearer {sb['linkedin'].api_key}"}
    body = {"author": "urn:li:person:abc123", "commentary": "x", "visibility": "PUBLIC",
            "distribution": {"feedDistribution": "MAIN_FEED"}, "lifecycleState": "PUBLISHED"}
    no_version = httpx.post(url, json=body, headers={**auth, "X-Restli-Protocol-Version": "2.0.0"})
    assert no_version.status_code == 400 and no_version.json()["code"] == "VERSION_MISSING"
    old = httpx.post(url, json=body, headers={**auth, "LinkedIn-Version": "202301", "X-Restli-Protocol-Version": "2.0.0"})
    assert old.status_code == 426
    no_restli = httpx.post(url, json=body, headers={**auth, "LinkedIn-Version": "202601"})
    assert no_restli.status_code == 400
    missing = httpx.post(url, json={"author": "urn:li:person:abc123"},
                         headers={**auth, "LinkedIn-Version": "202601", "X-Restli-Protocol-Version": "2.0.0"})
    assert missing.status_code == 422
    assert {e["input"]["inputPath"]["fieldPath"] for e in missing.json()["errorDetails"]["inputErrors"]} == \
        {"commentary", "visibility", "distribution", "lifecycleState"}
    # a version LinkedIn no longer serves is the operator's to fix
    err = raises(AuthError, build(LinkedInAdapter, **sb["linkedin"].adapter_settings(version="202301")).publish_post(
        PublishPost(text="x"), ctx()))
    assert "settings.version" in err.message and "202301 is not active" in err.message


def test_linkedin_auth_permission_and_throttle(sb) -> None:
    li = sb["linkedin"]
    err = raises(AuthError, build(LinkedInAdapter, **li.adapter_settings(author="urn:li:organization:99")).publish_post(
        PublishPost(text="x"), ctx()))
    assert "w_organization_social" in err.message and "Not enough permissions" in err.message
    raises(AuthError, build(LinkedInAdapter, **li.adapter_settings(access_token="expired")).publish_post(
        PublishPost(text="x"), ctx()))
    li.faults.update({"throttle_for_s": 60, "retry_after_s": 60})
    err = raises(RateLimited, build(LinkedInAdapter, **li.adapter_settings()).publish_post(PublishPost(text="x"), ctx()))
    assert err.retry_after_s is None  # LinkedIn says nothing about when


# --- X --------------------------------------------------------------------------
def test_x_posts_refuses_duplicates_and_sends_rate_limit_headers(sb) -> None:
    x = sb["x"]
    value = post(build(XAdapter, **x.adapter_settings()), "Hello X")  # a fresh adapter per event loop
    assert x.tweets[value["post_id"]] == "Hello X"
    err = raises(ProviderRejected, build(XAdapter, **x.adapter_settings()).publish_post(PublishPost(text="Hello X"),
                                                                                       ctx()))
    assert "duplicate content" in err.message
    reply = httpx.get(sb.url("x") + "/2/users/me", headers={"Authorization": f"Bearer {x.api_key}"})
    assert reply.json()["data"]["id"] and {"x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"} <= \
        set(reply.headers)
    unauthorized = httpx.post(sb.url("x") + "/2/tweets", json={"text": "hi"})
    assert unauthorized.status_code == 401 and unauthorized.headers["content-type"].startswith("application/problem+json")
    assert "x-rate-limit-reset" in unauthorized.headers


def test_x_429_says_when_the_window_resets(sb) -> None:
    x = sb["x"]
    x.faults.update({"throttle_for_s": 120})
    err = raises(RateLimited, build(XAdapter, **x.adapter_settings()).publish_post(PublishPost(text="t"), ctx()))
    assert 115 <= err.retry_after_s <= 121


def test_x_window_runs_out(sb) -> None:
    from actors.sandbox.x import XStandIn

    x: XStandIn = sb["x"]
    x.window_limit = 2
    try:
        post(build(XAdapter, **x.adapter_settings()), "one")
        post(build(XAdapter, **x.adapter_settings()), "two")
        err = raises(RateLimited, build(XAdapter, **x.adapter_settings()).publish_post(PublishPost(text="three"), ctx()))
        assert 890 <= err.retry_after_s <= 901 and len(x.tweets) == 2
    finally:
        x.window_limit = 100


# --- Ayrshare -------------------------------------------------------------------
def test_ayrshare_posts_to_each_network_and_checks_links(sb) -> None:
    ayr = sb["ayrshare"]
    li = post(build(AyrshareAdapter, **ayr.adapter_settings()), "Hi", network="linkedin")
    tw = post(build(AyrshareAdapter, **ayr.adapter_settings()), "Hi", network="x")
    assert li["post_id"].startswith("urn:li:share:") and tw["url"].endswith(tw["post_id"])
    assert [p["platforms"] for p in ayr.posts] == [["linkedin"], ["twitter"]]
    run(build(AyrshareAdapter, **ayr.adapter_settings()).probe())
    ayr.linked = ("linkedin",)
    try:
        err = raises(AuthError, build(AyrshareAdapter, **ayr.adapter_settings()).probe())
        assert "twitter" in err.message
        partial = post(build(AyrshareAdapter, **ayr.adapter_settings(default_networks=["linkedin", "x"])), "Both")
        assert partial["partial"] is True and "twitter" in partial["errors"][0] and set(partial["posts"]) == {"linkedin"}
        err = raises(ProviderRejected, build(AyrshareAdapter, **ayr.adapter_settings()).publish_post(
            PublishPost(text="x", network="x"), ctx()))
        assert "not linked" in err.message
    finally:
        ayr.linked = ("linkedin", "twitter")
    raises(AuthError, build(AyrshareAdapter, **ayr.adapter_settings(api_key="wrong")).publish_post(
        PublishPost(text="x"), ctx()))
