"""webhook_dispatch through the router on a real local Ray, against the
stand-ins on loopback: signed delivery, auth, and fallback. Providers are
tried in the configured order and never cool down here, so each step's
attempts are exactly what the adapters said."""

from __future__ import annotations

import time
from typing import Any

import pytest

from actors.errors import ErrorKind
from actors.policy.health import Health
from tests.adapters.script import reset_all

pytestmark = pytest.mark.ray

AUTH, TRANSIENT, LIMITED = ErrorKind.AUTH, ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED
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


def test_webhook_dispatch_signed_delivery_fallback_to_make_and_make_410(gateway, sb) -> None:
    rx, make = sb["webhook"], sb["make"]
    gw = gateway({"policy": POLICY, "capabilities": {"webhook_dispatch": {"providers": [
        {"name": "webhook", "adapter": "webhook", "settings": rx.adapter_settings()},
        {"name": "make", "adapter": "make", "settings": make.adapter_settings()},
    ]}}})
    event = {"event": "lead.created", "data": {"email": "ann@example.com"}}

    # Neither has a health check to call: the self-check says so and still counts them usable.
    check = gw.ray.get(gw.supervisor.run_full_check.remote())
    assert check.ok and set(check.capabilities[0].usable_providers) == {"webhook", "make"}
    assert {r.provider for r in check.recommendations if "no health check" in r.problem} == {"webhook", "make"}

    # Signed with the shared secret, verified by the receiver; webhook-id is the idempotency key.
    res = gw.invoke("webhook_dispatch", "dispatch", event, idempotency_key="lead-42-created")
    assert res.ok and res.provider == "webhook" and res.value == {"delivery_id": "lead-42-created", "status_code": 200}
    assert [d["id"] for d in rx.deliveries] == ["lead-42-created"]
    assert rx.deliveries[0]["body"]["data"] == event["data"] and rx.deliveries[0]["body"]["type"] == "lead.created"

    # The receiver no longer shares our secret: 401, auth, and Make takes it.
    rx.secret = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    res = gw.invoke("webhook_dispatch", "dispatch", event, idempotency_key="lead-43-created")
    assert res.ok and kinds(res) == [("webhook", AUTH), ("make", None)]
    assert make.deliveries[-1]["id"] == "lead-43-created" and make.deliveries[-1]["type"] == "lead.created"

    # The receiver is down: Make takes it.
    rx.faults.update({"down": True})
    res = gw.invoke("webhook_dispatch", "dispatch", event)
    assert res.ok and kinds(res) == [("webhook", TRANSIENT), ("make", None)]

    # Make's scenario is off: 410, an auth-kind failure that says what to do; the URL stays secret.
    make.scenario_on = False
    res = gw.invoke("webhook_dispatch", "dispatch", event)
    assert not res.ok and kinds(res) == [("webhook", TRANSIENT), ("make", AUTH)]
    assert "turn the scenario on" in res.attempts[1].error and make.api_key not in str(res.to_dict())

    # Make's 429: throttled, not unhealthy.
    make.scenario_on = True
    make.faults.update({"throttle_for_s": 60})
    res = gw.invoke("webhook_dispatch", "dispatch", event)
    assert kinds(res) == [("webhook", TRANSIENT), ("make", LIMITED)]
    make_status = status(gw, "webhook_dispatch", "make")
    assert make_status.health is not Health.UNHEALTHY and make_status.throttled_until > time.time() + 5

    # The receiver's 429 with Retry-After: throttled for that long.
    rx.faults.update({"down": False, "throttle_for_s": 60, "retry_after_s": 40})
    res = gw.invoke("webhook_dispatch", "dispatch", event)
    assert kinds(res) == [("webhook", LIMITED)]  # Make, still throttled, is not tried
    assert res.error.kind is ErrorKind.RATE_LIMITED and res.error.retry_after_s > 5   # every provider throttled
    rx_status = status(gw, "webhook_dispatch", "webhook")
    assert rx_status.health is not Health.UNHEALTHY and 35 < rx_status.throttled_until - time.time() <= 40
