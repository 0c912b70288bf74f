"""The webhook_dispatch stand-ins (Make, a Standard Webhooks receiver) behave like their providers, and the
adapters talk to them over real loopback HTTP (no Ray)."""

from __future__ import annotations

import time

import httpx
import pytest

from actors.adapters.webhooks.make import MakeWebhookAdapter
from actors.adapters.webhooks.webhook import StandardWebhookAdapter
from actors.errors import AuthError, ProviderRejected, RateLimited, TransientError
from actors.payloads import Dispatch, PublishPost
from tests.adapters.script import build, ctx, raises, reset_all, run


@pytest.fixture
def sb(sandbox):
    reset_all(sandbox)
    return sandbox


def post(adapter, text: str = "Hello", **kw) -> dict:
    return run(adapter.publish_post(PublishPost(text=text, **kw), ctx()))


# --- Make -----------------------------------------------------------------------
def test_make_accepts_then_answers_410_when_the_scenario_is_off(sb) -> None:
    make = sb["make"]
    value = run(build(MakeWebhookAdapter, **make.adapter_settings()).dispatch(
        Dispatch(event="lead.created", data={"n": 1}), ctx("dispatch", idempotency_key="k1")))
    assert value == {"delivery_id": "k1", "status_code": 200}
    assert make.deliveries[0]["id"] == "k1" and make.deliveries[0]["data"] == {"n": 1}
    httpx.post(sb.url("make") + "/_sandbox/make", json={"scenario_on": False})
    err = raises(AuthError, build(MakeWebhookAdapter, **make.adapter_settings()).dispatch(
        Dispatch(event="e", data={}), ctx("dispatch")))
    assert "no scenario listening" in err.message.lower() and make.api_key not in err.message
    make.faults.update({"throttle_for_s": 30, "retry_after_s": 30})
    err = raises(RateLimited, build(MakeWebhookAdapter, **make.adapter_settings()).dispatch(
        Dispatch(event="e", data={}), ctx("dispatch")))
    assert err.retry_after_s == 30


# --- Standard Webhooks receiver --------------------------------------------------
def test_the_receiver_verifies_signatures_and_drops_repeated_ids(sb) -> None:
    rx = sb["webhook"]
    event = Dispatch(event="lead.created", data={"email": "ann@example.com"})
    for _ in range(2):  # the same request sent twice: delivered once
        value = run(build(StandardWebhookAdapter, **rx.adapter_settings()).dispatch(
            event, ctx("dispatch", idempotency_key="lead-42")))
        assert value == {"delivery_id": "lead-42", "status_code": 200}
    assert [d["id"] for d in rx.deliveries] == ["lead-42"] and rx.duplicates == 1
    assert rx.deliveries[0]["body"]["data"] == {"email": "ann@example.com"}


def test_the_receiver_rejects_a_wrong_secret_and_a_stale_timestamp(sb) -> None:
    rx = sb["webhook"]
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    err = raises(AuthError, build(StandardWebhookAdapter, **rx.adapter_settings(secret=other)).dispatch(
        Dispatch(event="e", data={}), ctx("dispatch")))
    assert "no matching signature" in err.message
    settings = StandardWebhookAdapter.Settings.model_validate(rx.adapter_settings())
    stale = StandardWebhookAdapter(settings, capability="webhook_dispatch", provider="hooks",
                                   clock=lambda: time.time() - 3600)
    err = raises(ProviderRejected, stale.dispatch(Dispatch(event="e", data={}), ctx("dispatch")))
    assert "too old" in err.message and rx.deliveries == []
    rx.gone = True
    err = raises(AuthError, build(StandardWebhookAdapter, **rx.adapter_settings()).dispatch(
        Dispatch(event="e", data={}), ctx("dispatch")))
    assert "asked to be disabled" in err.message


def test_the_receiver_health_url_serves_the_probe(sb) -> None:
    rx = sb["webhook"]
    adapter = build(StandardWebhookAdapter, **rx.adapter_settings(health_url=rx.base_url + "/health"))
    run(adapter.probe())
    rx.faults.update({"down": True})
    raises(TransientError, build(StandardWebhookAdapter,
                                 **rx.adapter_settings(health_url=rx.base_url + "/health")).probe())
