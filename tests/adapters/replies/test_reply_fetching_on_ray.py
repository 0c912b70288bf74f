"""reply_fetching through the router on a real local Ray: `imap` (a real
Dovecot) first and `gmail_api` (the stand-in) as the fallback; then the
reverse order for Gmail's 429."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from actors.errors import ErrorKind
from actors.policy.health import Health
from actors.sandbox.dovecot import unavailable_reason
from tests.adapters.replies.helpers import IN_CI, USER, corpus, seed, start_dovecot

pytestmark = pytest.mark.ray

if not IN_CI and unavailable_reason():  # skip before the session's Ray cluster starts for nothing
    pytest.skip(unavailable_reason(), allow_module_level=True)

UNSEEN_NEWEST_FIRST = ["<r6@lead.example>", "<r4@lead.example>", "<r3@lead.example>", "<r1@lead.example>"]
SINCE = {"since": "2026-02-01T09:45:00Z"}  # leaves out r1 (09:30:05) on both providers


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Any]:
    server = start_dovecot()
    seed(server)
    yield server
    server.cleanup()


@pytest.fixture
def gmail(gmail_sandbox: Any) -> Any:
    from actors.sandbox.base import Faults

    stand_in = gmail_sandbox["gmail_api"]
    stand_in.faults = Faults()
    stand_in.received.clear()
    stand_in.reset()
    for item in corpus():
        stand_in.add_message(item.raw, unread=not item.seen, internal_date=item.arrived)
    return stand_in


def providers(dovecot: Any, gmail: Any, imap_over: dict | None = None) -> dict[str, dict]:
    return {
        "imap": {"name": "imap", "adapter": "imap", "settings": dovecot.adapter_settings(USER, **(imap_over or {}))},
        "gmail": {"name": "gmail", "adapter": "gmail_api",
                  "settings": {"base_url": gmail.base_url, "token_url": gmail.base_url + "/token",
                               "access_token": gmail.api_key}},
    }


def config(*entries: dict) -> dict:
    return {"capabilities": {"reply_fetching": {"providers": list(entries)}}}


def ids(result: Any) -> list[str]:
    return [r["message_id"] for r in result.value["replies"]]


def attempts(result: Any) -> list[tuple[str, bool, ErrorKind | None]]:
    return [(a.provider, a.ok, a.error_kind) for a in result.attempts]


def test_dovecot_serves_and_gmail_takes_over_when_it_stops(gateway, dovecot, gmail) -> None:
    p = providers(dovecot, gmail)
    gw = gateway(config(p["imap"], p["gmail"]))
    first = gw.invoke("reply_fetching", "fetch_replies", SINCE)
    assert first.ok and first.provider == "imap", first.error
    assert ids(first) == UNSEEN_NEWEST_FIRST[:3]
    assert gmail.received == []
    dovecot.stop()
    try:
        fallback = gw.invoke("reply_fetching", "fetch_replies", SINCE)
    finally:
        dovecot.start()
    assert fallback.ok and fallback.provider == "gmail"
    assert attempts(fallback) == [("imap", False, ErrorKind.TRANSIENT), ("gmail", True, None)]
    assert "connection refused" in fallback.attempts[0].error
    assert ids(fallback) == ids(first)  # the same replies, whichever provider read them


def test_a_wrong_imap_password_falls_back_to_gmail(gateway, dovecot, gmail) -> None:
    p = providers(dovecot, gmail, imap_over={"password": "not-the-password"})
    gw = gateway(config(p["imap"], p["gmail"]))
    result = gw.invoke("reply_fetching", "fetch_replies", SINCE)
    assert result.ok and result.provider == "gmail"
    assert attempts(result) == [("imap", False, ErrorKind.AUTH), ("gmail", True, None)]
    assert "not-the-password" not in result.attempts[0].error
    assert ids(result) == UNSEEN_NEWEST_FIRST[:3]


def test_gmail_429_is_rate_limited_and_throttles_it(gateway, dovecot, gmail, ray_cluster) -> None:
    p = providers(dovecot, gmail)
    gw = gateway(config(p["gmail"], p["imap"]))
    gmail.faults.update({"throttle_for_s": 60, "retry_after_s": 60})
    result = gw.invoke("reply_fetching", "fetch_replies", SINCE)
    assert result.ok and result.provider == "imap"
    assert attempts(result) == [("gmail", False, ErrorKind.RATE_LIMITED), ("imap", True, None)]
    status = ray_cluster.get(gw.provider("reply_fetching", "gmail").status.remote())
    assert status.health is not Health.UNHEALTHY and status.consecutive_failures == 0
    assert status.throttled_until is not None and status.throttled_until > time.time() + 30  # "Retry after" honoured
    calls = len(gmail.received)
    again = gw.invoke("reply_fetching", "fetch_replies", SINCE)
    assert attempts(again) == [("imap", True, None)]  # the throttled provider is not asked
    assert len(gmail.received) == calls
