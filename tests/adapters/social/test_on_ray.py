"""social_posting through the router on a real local Ray, against the
stand-ins on loopback: network routing, duplicates, auth, rate limits and
fallback. Providers are tried in the configured order and never cool down
here, so each step's attempts are exactly what the adapters said."""

from __future__ import annotations

import time
from typing import Any

import pytest

from actors.errors import ErrorKind
from actors.policy.health import Health
from tests.adapters.script import reset_all

pytestmark = pytest.mark.ray

NS, AUTH, TRANSIENT, LIMITED = ErrorKind.NOT_SUPPORTED, ErrorKind.AUTH, ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED
POLICY = {
    "routing": {"ranking": "actors.policy.ranking:configured_order", "attempt_timeout_s": 5, "deadline_s": 30},
    "health": {"unhealthy_after": 50, "default_throttle_s": 0.5},
}


@pytest.fixture
def sb(sandbox):
    reset_all(sandbox)
    return sandbox


def kinds(res: Any) -> list[tuple[str, Any]]:
    return [(a.provider, a.error_kind) for a in res.attempts]


def status(gw: Any, capability: str, name: str) -> Any:
    return gw.ray.get(gw.provider(capability, name).status.remote())


def social(gateway: Any, sb: Any) -> Any:
    return gateway({"policy": POLICY, "capabilities": {"social_posting": {"providers": [
        {"name": "linkedin", "adapter": "linkedin", "settings": sb["linkedin"].adapter_settings()},
        {"name": "x", "adapter": "x", "settings": sb["x"].adapter_settings()},
        {"name": "ayrshare", "adapter": "ayrshare", "settings": sb["ayrshare"].adapter_settings()},
    ]}}})


def test_social_posting_routes_by_network_and_falls_back(gateway, sb) -> None:
    li, ayr = sb["linkedin"], sb["ayrshare"]
    gw = social(gateway, sb)

    # A post for X skips LinkedIn, which counts no failure.
    res = gw.invoke("social_posting", "publish_post", {"text": "Hello X", "network": "x"})
    assert res.ok and res.provider == "x" and kinds(res) == [("linkedin", NS), ("x", None)]
    assert res.value["url"] == f"https://x.com/i/web/status/{res.value['post_id']}"
    assert status(gw, "social_posting", "linkedin").total_failures == 0

    # LinkedIn publishes; the same post again is "already posted", naming the first.
    first = gw.invoke("social_posting", "publish_post", {"text": "Launch day"})
    again = gw.invoke("social_posting", "publish_post", {"text": "Launch day"})
    assert first.ok and first.provider == "linkedin" and first.value["duplicate"] is False
    assert again.ok and again.provider == "linkedin" and again.value["duplicate"] is True
    assert again.value["post_id"] == first.value["post_id"] and len(li.posts) == 1

    # LinkedIn down: a LinkedIn post goes out through Ayrshare.
    li.faults.update({"down": True})
    res = gw.invoke("social_posting", "publish_post", {"text": "Down day", "network": "linkedin"})
    assert res.ok and res.provider == "ayrshare"
    assert kinds(res) == [("linkedin", TRANSIENT), ("x", NS), ("ayrshare", None)]
    assert res.value["post_id"].startswith("urn:li:share:") and ayr.posts[-1]["platforms"] == ["linkedin"]
    # A post that names no network goes to each provider's own: here X's.
    res = gw.invoke("social_posting", "publish_post", {"text": "Any network"})
    assert res.ok and kinds(res) == [("linkedin", TRANSIENT), ("x", None)]

    # LinkedIn refuses the token: auth, and Ayrshare serves.
    li.faults.update({"down": False, "reject_auth": True})
    res = gw.invoke("social_posting", "publish_post", {"text": "Auth day", "network": "linkedin"})
    assert res.ok and res.provider == "ayrshare" and kinds(res)[0] == ("linkedin", AUTH)
    assert "access_token" in res.attempts[0].error and li.api_key not in res.attempts[0].error

    # LinkedIn's 429 names no time: throttled for the default, not unhealthy.
    li.faults.update({"reject_auth": False, "throttle_for_s": 60})
    before = time.time()
    res = gw.invoke("social_posting", "publish_post", {"text": "Busy day", "network": "linkedin"})
    assert res.ok and res.provider == "ayrshare" and kinds(res)[0] == ("linkedin", LIMITED)
    li_status = status(gw, "social_posting", "linkedin")
    assert li_status.health is not Health.UNHEALTHY and before < li_status.throttled_until <= time.time() + 0.5


def test_social_posting_auth_and_rate_limits_of_x_and_ayrshare(gateway, sb) -> None:
    x, ayr = sb["x"], sb["ayrshare"]
    gw = social(gateway, sb)
    post_x = {"text": "Hello", "network": "x"}

    x.faults.update({"reject_auth": True})
    res = gw.invoke("social_posting", "publish_post", {**post_x, "text": "auth"})
    assert res.ok and kinds(res) == [("linkedin", NS), ("x", AUTH), ("ayrshare", None)]
    assert ayr.posts[-1]["platforms"] == ["twitter"]

    x.faults.update({"reject_auth": False, "down": True})
    res = gw.invoke("social_posting", "publish_post", {**post_x, "text": "down"})
    assert res.ok and kinds(res) == [("linkedin", NS), ("x", TRANSIENT), ("ayrshare", None)]

    # X's 429 says when its window resets: the provider is throttled until then, and skipped.
    x.faults.update({"down": False, "throttle_for_s": 60})
    res = gw.invoke("social_posting", "publish_post", {**post_x, "text": "busy"})
    assert res.ok and kinds(res) == [("linkedin", NS), ("x", LIMITED), ("ayrshare", None)]
    x_status = status(gw, "social_posting", "x")
    assert x_status.health is not Health.UNHEALTHY and x_status.throttled_until > time.time() + 50
    res = gw.invoke("social_posting", "publish_post", {**post_x, "text": "still busy"})
    assert res.ok and kinds(res) == [("linkedin", NS), ("ayrshare", None)]

    ayr.faults.update({"reject_auth": True})
    res = gw.invoke("social_posting", "publish_post", {**post_x, "text": "ayr auth"})
    assert not res.ok and kinds(res) == [("linkedin", NS), ("ayrshare", AUTH)]
    assert res.error.kind is ErrorKind.ALL_PROVIDERS_FAILED and ayr.api_key not in res.error.message

    ayr.faults.update({"reject_auth": False, "throttle_for_s": 60})
    res = gw.invoke("social_posting", "publish_post", {**post_x, "text": "ayr busy"})
    assert not res.ok and kinds(res) == [("linkedin", NS), ("ayrshare", LIMITED)]
    assert status(gw, "social_posting", "ayrshare").throttled_until > time.time() + 250  # Ayrshare's 5 minutes
