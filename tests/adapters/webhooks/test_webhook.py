"""The Standard Webhooks adapter: signing, ids, the spec's reply rules, probe."""

from __future__ import annotations

import base64
import json

import pytest

from actors.adapters.webhooks.webhook import StandardWebhookAdapter, decode_secret, message_id, sign
from actors.errors import AuthError, ProviderRejected, RateLimited, TransientError
from actors.payloads import Dispatch
from actors.sandbox.webhook import WebhookReceiverStandIn
from tests.adapters.script import Script, answer, ctx, raises, run

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
URL = "https://hooks.example.com/aicmo"
NOW = 1_800_000_000.0
EVENT = Dispatch(event="lead.created", data={"email": "ann@example.com", "name": "Ånn"})


def adapter(script: Script, **over) -> StandardWebhookAdapter:
    settings = StandardWebhookAdapter.Settings.model_validate({"url": URL, "secret": SECRET, **over})
    return StandardWebhookAdapter(settings, capability="webhook_dispatch", provider="hooks",
                                  transport=script.transport, clock=lambda: NOW)


def dispatch(a: StandardWebhookAdapter, **kw) -> dict:
    return run(a.dispatch(EVENT, ctx("dispatch", **kw)))


def test_the_signature_matches_the_reference_vector() -> None:
    # The example of the Standard Webhooks / Svix documentation.
    key = decode_secret(SECRET)
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_delivery_is_signed_over_the_exact_bytes_sent() -> None:
    script = Script(answer(204))
    value = dispatch(adapter(script), idempotency_key="lead-42-created")
    request = script.last
    assert (request.method, str(request.url)) == ("POST", URL)
    assert request.headers["webhook-id"] == "lead-42-created"
    assert request.headers["webhook-timestamp"] == str(int(NOW))
    expected = base64.b64encode(__import__("hmac").new(
        base64.b64decode(SECRET[6:]), b"lead-42-created.1800000000." + request.content, "sha256").digest()).decode()
    assert request.headers["webhook-signature"] == f"v1,{expected}"
    assert json.loads(request.content) == {"type": "lead.created", "timestamp": "2027-01-15T08:00:00.000Z",
                                           "data": {"email": "ann@example.com", "name": "Ånn"}}
    # an independent verifier (the stand-in's, written from the spec) accepts it
    receiver = WebhookReceiverStandIn(secret=SECRET, clock=lambda: NOW)
    assert receiver.verify(request.headers, request.content) == (200, "ok")
    assert value == {"delivery_id": "lead-42-created", "status_code": 204}


def test_the_webhook_id_is_stable_across_retries() -> None:
    script = Script(answer(200, {}))
    a = adapter(script)
    dispatch(a, idempotency_key="k-1")
    dispatch(a, idempotency_key="k-1")
    dispatch(a, request_id="r-9")
    assert [r.headers["webhook-id"] for r in script.requests] == ["k-1", "k-1", "r-9"]
    odd = message_id(ctx("dispatch", idempotency_key="lead 42 / ünïcode"))
    assert odd.startswith("msg_") and odd == message_id(ctx("dispatch", idempotency_key="lead 42 / ünïcode"))


@pytest.mark.parametrize(("reply", "kind", "words"), [
    (answer(410, text="Gone"), AuthError, "asked to be disabled"),
    (answer(301, headers={"location": "https://new.example/h"}), AuthError, "moved permanently to https://new.example/h"),
    (answer(308, headers={"location": "https://new.example/h"}), AuthError, "settings.url"),
    (answer(302, headers={"location": "https://other.example/h"}), TransientError, "do not follow redirects"),
    (answer(401, {"error": "no matching signature found"}), AuthError, "settings.secret"),
    (answer(403, {"error": "forbidden"}), AuthError, "settings.secret"),
    (answer(400, {"error": "message timestamp too old"}), ProviderRejected, "timestamp too old"),
    (answer(500, text="boom"), TransientError, "HTTP 500"),
    (answer(503, text="down"), TransientError, "HTTP 503"),
])
def test_replies_follow_the_senders_rules(reply, kind: type, words: str) -> None:
    err = raises(kind, adapter(Script(reply)).dispatch(EVENT, ctx("dispatch")))
    assert words in err.message and SECRET not in err.message


@pytest.mark.parametrize(("status", "maybe"), [(429, False), (502, False), (504, True)])
def test_429_502_504_mean_slow_down_and_honour_retry_after(status: int, maybe: bool) -> None:
    err = raises(RateLimited, adapter(Script(answer(status, text="slow down", headers={"Retry-After": "30"}))).dispatch(
        EVENT, ctx("dispatch")))
    assert err.retry_after_s == 30 and err.maybe_delivered is maybe
    err = raises(RateLimited, adapter(Script(answer(status, text="slow down"))).dispatch(EVENT, ctx("dispatch")))
    assert err.retry_after_s is None


def test_data_that_is_not_json_is_refused_before_sending() -> None:
    script = Script(answer(200, {}))
    raises(ProviderRejected, adapter(script).dispatch(Dispatch(event="e", data={"when": {1, 2}}), ctx("dispatch")))
    raises(ProviderRejected, adapter(script).dispatch(Dispatch(event="e", data={"x": float("nan")}), ctx("dispatch")))
    assert script.requests == []


def test_dry_run_sends_nothing_and_shows_the_signed_request() -> None:
    script = Script(answer(200, {}))
    out = run(adapter(script).call("dispatch", EVENT, ctx("dispatch", dry_run=True, idempotency_key="k")))
    assert script.requests == [] and out["delivered"] is False
    assert out["would_send"]["headers"]["webhook-id"] == "k" and out["would_send"]["headers"]["webhook-signature"]
    assert SECRET[6:] not in str(out)


def test_a_token_in_the_url_path_is_a_secret_everywhere_it_could_show() -> None:
    from actors.config import parse_config

    token_url = "https://hooks.example.com/services/T0K3N-zq8Wp4"
    script = Script(answer(200, {}))
    out = run(adapter(script, url=token_url).call("dispatch", EVENT, ctx("dispatch", dry_run=True)))
    assert out["would_send"]["url"] == "https://hooks.example.com/***"
    assert "T0K3N" not in str(out)
    raw = {"capabilities": {"webhook_dispatch": {"providers": [
        {"name": "hooks", "adapter": "webhook", "settings": {"url": token_url, "secret": SECRET,
                                                              "health_url": token_url + "/health"}}]}}}
    provider = parse_config(raw, env={}).capabilities["webhook_dispatch"].providers[0]
    assert "T0K3N" not in str(provider.masked_settings()) and "T0K3N" not in repr(provider)
    assert token_url in provider.validated_settings.secret_values()  # so errors quoting it are redacted


def test_dispatch_is_deduplicated_by_receivers() -> None:
    assert "dispatch" in StandardWebhookAdapter.resends_deduplicated


def test_without_a_health_url_the_probe_calls_nothing_and_says_it_has_none() -> None:
    script = Script(answer(200, {}))
    a = adapter(script)
    run(a.probe())
    assert script.requests == [] and a.has_probe is False and StandardWebhookAdapter.has_probe is False


def test_with_a_health_url_the_probe_gets_it() -> None:
    script = Script(answer(200, {"status": "ok"}), answer(503, text="down"), answer(410, text="gone"),
                    answer(302, headers={"location": "/login"}))
    a = adapter(script, health_url="https://hooks.example.com/health")
    assert a.has_probe is True and StandardWebhookAdapter.probes_with(a.settings) is True
    run(a.probe())
    assert (script.last.method, str(script.last.url)) == ("GET", "https://hooks.example.com/health")
    raises(TransientError, a.probe())
    raises(AuthError, a.probe())
    raises(TransientError, a.probe())


def test_secret_decoding_takes_the_usual_variants() -> None:
    key = decode_secret(SECRET)
    assert len(key) == 24 and decode_secret(SECRET[6:]) == key
    urlsafe = base64.urlsafe_b64encode(b"\xfb\xff" * 12).decode()  # holds - and _
    assert decode_secret("whsec_" + urlsafe) == b"\xfb\xff" * 12
    assert decode_secret("whsec_" + urlsafe.rstrip("=")) == b"\xfb\xff" * 12


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", "plain words", "whsec_abcde", "whsec_a=b"])
def test_a_secret_that_is_not_whsec_base64_is_refused_without_echoing_it(secret: str) -> None:
    from actors.config import parse_config
    from actors.errors import ConfigError

    config = {"capabilities": {"webhook_dispatch": {"providers": [
        {"name": "hooks", "adapter": "webhook", "settings": {"url": URL, "secret": secret}}]}}}
    with pytest.raises(ConfigError) as info:
        parse_config(config, env={})
    assert "providers[0].settings.secret" in str(info.value) and secret not in str(info.value)


def test_a_short_secret_is_a_warning() -> None:
    short = "whsec_" + base64.b64encode(b"0123456789").decode()
    assert any("10 bytes" in w for w in adapter(Script(), secret=short).warnings())
    assert adapter(Script()).warnings() == []


def test_the_provider_actor_counts_a_real_health_check_only() -> None:
    from actors.provider.core import ProviderCore
    from tests.unit.fakes import provider_spec

    for health_url, counted in ((None, 0), ("https://hooks.example.com/health", 1)):
        script = Script(answer(200, {"status": "ok"}))
        core = ProviderCore(provider_spec(), adapter(script, health_url=health_url))
        result = run(core.probe())
        assert result.ok and core.health.total_calls == counted and len(script.requests) == counted
