"""The Make webhook adapter against a scripted transport."""

from __future__ import annotations

import httpx
import pytest

from actors.adapters.webhooks.make import MakeWebhookAdapter
from actors.errors import AttemptTimeout, AuthError, ProviderRejected, RateLimited, TransientError
from actors.payloads import Dispatch
from tests.adapters.script import Script, answer, ctx, raises, run

TOKEN = "k3q9zt5w1hookprivate"
URL = f"https://hook.eu1.make.com/{TOKEN}"
NOW = 1_800_000_000.25
EVENT = Dispatch(event="lead.created", data={"email": "ann@example.com", "score": 7})


def adapter(script: Script, **over) -> MakeWebhookAdapter:
    settings = MakeWebhookAdapter.Settings.model_validate({"url": URL, **over})
    return MakeWebhookAdapter(settings, capability="webhook_dispatch", provider="make", transport=script.transport,
                              clock=lambda: NOW)


def dispatch(a: MakeWebhookAdapter, **kw) -> dict:
    return run(a.dispatch(EVENT, ctx("dispatch", **kw)))


def test_the_event_is_posted_as_json_to_the_hook_url() -> None:
    script = Script(answer(200, text="Accepted"))
    value = dispatch(adapter(script), idempotency_key="lead-42-created")
    assert (script.last.method, str(script.last.url)) == ("POST", URL)
    assert script.last.headers["content-type"] == "application/json" and "x-make-apikey" not in script.last.headers
    assert script.body() == {"type": "lead.created", "timestamp": "2027-01-15T08:00:00.250Z", "id": "lead-42-created",
                             "data": {"email": "ann@example.com", "score": 7}}
    assert value == {"delivery_id": "lead-42-created", "status_code": 200}


def test_without_a_key_the_id_is_the_request_id_and_a_webhook_api_key_is_sent() -> None:
    script = Script(answer(200, text="Accepted"))
    value = dispatch(adapter(script, api_key="make-hook-key-1"), request_id="0f3c")
    assert script.body()["id"] == "0f3c" and value["delivery_id"] == "0f3c"
    assert script.last.headers["x-make-apikey"] == "make-hook-key-1"


def test_a_scenarios_own_webhook_response_is_a_success() -> None:
    assert dispatch(adapter(Script(answer(202, {"queued": True}))))["status_code"] == 202


@pytest.mark.parametrize("status", [410, 404])
def test_no_scenario_listening_is_auth_and_says_what_to_do(status: int) -> None:
    reply = answer(status, text="There is no scenario listening for this webhook.")
    err = raises(AuthError, adapter(Script(reply)).dispatch(EVENT, ctx("dispatch")))
    assert "turn the scenario on" in err.message and "re-attach" in err.message and "settings.url" in err.message
    assert TOKEN not in err.message


def test_a_wrong_hook_api_key_is_auth() -> None:
    err = raises(AuthError, adapter(Script(answer(401, text="Unauthorized"))).dispatch(EVENT, ctx("dispatch")))
    assert "settings.api_key" in err.message


def test_429_waits_the_ten_second_window_unless_told_otherwise() -> None:
    err = raises(RateLimited, adapter(Script(answer(429, text="Too many requests."))).dispatch(EVENT, ctx("dispatch")))
    assert err.retry_after_s == 10 and "Too many requests" in err.message
    err = raises(RateLimited, adapter(Script(answer(429, text="Too many requests.", headers={"Retry-After": "3"}))
                                      ).dispatch(EVENT, ctx("dispatch")))
    assert err.retry_after_s == 3


def test_5xx_is_transient_and_400_a_rejection() -> None:
    raises(TransientError, adapter(Script(answer(500, text="Internal Server Error"))).dispatch(EVENT, ctx("dispatch")))
    err = raises(ProviderRejected, adapter(Script(answer(400, text="Queue is full."))).dispatch(EVENT, ctx("dispatch")))
    assert "Queue is full." in err.message


def test_transport_failures_keep_the_url_out_and_say_whether_it_may_have_run() -> None:
    err = raises(TransientError, adapter(Script(httpx.ConnectError("connection refused"))).dispatch(
        EVENT, ctx("dispatch")))
    assert not err.maybe_delivered and TOKEN not in err.message
    err = raises(AttemptTimeout, adapter(Script(httpx.ReadTimeout("timed out"))).dispatch(EVENT, ctx("dispatch")))
    assert err.maybe_delivered and TOKEN not in err.message


def test_dry_run_sends_nothing_and_masks_the_url() -> None:
    script = Script(answer(200, text="Accepted"))
    out = run(adapter(script, api_key="make-hook-key-1").call("dispatch", EVENT, ctx("dispatch", dry_run=True,
                                                                                     idempotency_key="k1")))
    assert script.requests == [] and out["delivered"] is False
    assert out["would_send"]["url"] == "https://hook.eu1.make.com/***" and TOKEN not in str(out)
    assert "make-hook-key-1" not in str(out) and out["would_send"]["json"]["id"] == "k1"


def test_make_has_no_probe_and_the_probe_calls_nothing() -> None:
    script = Script(answer(200, text="Accepted"))
    run(adapter(script).probe())
    assert script.requests == [] and MakeWebhookAdapter.has_probe is False
    assert "dispatch" not in MakeWebhookAdapter.resends_deduplicated


def test_the_url_is_a_secret_and_must_be_http() -> None:
    settings = MakeWebhookAdapter.Settings.model_validate({"url": URL})
    assert TOKEN not in repr(settings) and TOKEN in settings.secret_values()[0]
    with pytest.raises(ValueError, match="http"):
        MakeWebhookAdapter.Settings.model_validate({"url": "hook.eu1.make.com/abc"})
