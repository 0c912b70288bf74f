"""ZeroBounceAdapter and NeverBounceAdapter with an injected transport:
status mappings, errors inside HTTP 200s, probes."""

from __future__ import annotations

import pytest

from actors.adapters.verification.neverbounce import NeverBounceAdapter
from actors.adapters.verification.zerobounce import ZeroBounceAdapter, zerobounce_status
from actors.errors import (
    AuthError,
    ErrorKind,
    MalformedResponse,
    ProviderRejected,
    RateLimited,
    TransientError,
)
from actors.payloads import VerifyEmail
from tests.adapters.recorder import SECRET, Recorder, ctx, make, reply, run

ADDR = VerifyEmail(email="ann@acme.example")


def zb(answer, **settings):
    rec = Recorder(answer)
    return make(ZeroBounceAdapter, rec.transport, **{"api_key": SECRET, **settings}), rec


def nb(answer, **settings):
    rec = Recorder(answer)
    return make(NeverBounceAdapter, rec.transport, **{"api_key": SECRET, **settings}), rec


# --- ZeroBounce -----------------------------------------------------------------------

def test_zerobounce_validate_request_and_value():
    a, rec = zb(reply(200, {"address": "ann@acme.example", "status": "catch-all", "sub_status": "",
                            "free_email": False, "did_you_mean": None}))
    value = run(a.verify_email(ADDR, ctx("verify_email")))
    assert value["email"] == "ann@acme.example" and value["status"] == "risky"
    assert value["provider_status"] == "catch-all" and value["sub_status"] is None
    request = rec.last
    assert request.method == "GET" and request.url.host == "api.zerobounce.net" and request.url.path == "/v2/validate"
    assert dict(request.url.params) == {"api_key": SECRET, "email": "ann@acme.example", "ip_address": ""}
    assert b"ip_address=" in request.url.query          # present though blank


@pytest.mark.parametrize("status,sub_status,expected", [
    ("valid", "", "valid"), ("invalid", "mailbox_not_found", "invalid"), ("catch-all", "", "risky"),
    ("unknown", "greylisted", "unknown"), ("spamtrap", "", "invalid"), ("abuse", "", "risky"),
    ("do_not_mail", "role_based", "risky"), ("do_not_mail", "disposable", "invalid"),
    ("do_not_mail", "toxic", "invalid"), ("do_not_mail", "global_suppression", "invalid"),
    ("do_not_mail", "mx_forward", "risky"), ("Valid", "", "valid"), ("something_new", "", "unknown"),
])
def test_zerobounce_status_table(status, sub_status, expected):
    assert zerobounce_status(status, sub_status) == expected


def test_zerobounce_sub_status_is_kept():
    a, _ = zb(reply(200, {"status": "do_not_mail", "sub_status": "role_based"}))
    value = run(a.verify_email(ADDR, ctx("verify_email")))
    assert (value["status"], value["sub_status"], value["provider_status"]) == ("risky", "role_based", "do_not_mail")


def test_zerobounce_bad_key_inside_a_200_is_an_auth_error_without_the_key():
    a, _ = zb(reply(200, {"error": f"Invalid API key or your account ran out of credits ({SECRET})"}))
    with pytest.raises(AuthError) as caught:
        run(a.verify_email(ADDR, ctx("verify_email")))
    assert "Invalid API key" in caught.value.message and SECRET not in caught.value.message


@pytest.mark.parametrize("answer,error", [
    (reply(429, {"error": "slow down"}), RateLimited),
    (reply(403, text="Blocked by API Shield"), AuthError),
    (reply(400, {"error": "Missing parameter: email"}), ProviderRejected),
    (reply(500, {"error": "internal"}), TransientError),
    (reply(520, text="cloudflare"), TransientError),
])
def test_zerobounce_http_errors(answer, error):
    a, _ = zb(answer)
    with pytest.raises(error) as caught:
        run(a.verify_email(ADDR, ctx("verify_email")))
    if error is RateLimited:
        assert caught.value.retry_after_s == 60.0        # ZeroBounce blocks for a minute


@pytest.mark.parametrize("answer", [reply(200, text="nope"), reply(200, {"address": "x"}),
                                    reply(200, {"status": "valid", "sub_status": 3}), reply(200, [1])])
def test_zerobounce_malformed(answer):
    a, _ = zb(answer)
    with pytest.raises(MalformedResponse):
        run(a.verify_email(ADDR, ctx("verify_email")))


def test_zerobounce_probe_reads_credits():
    a, rec = zb(reply(200, {"Credits": "2375323"}))
    run(a.probe())
    assert rec.last.url.path == "/v2/getcredits" and rec.last.url.params["api_key"] == SECRET
    a, _ = zb(reply(200, {"Credits": "-1"}))
    with pytest.raises(AuthError):
        run(a.probe())
    a, _ = zb(reply(200, {"Credits": "0"}))
    with pytest.raises(RateLimited) as caught:
        run(a.probe())
    assert caught.value.retry_after_s == 3600.0
    a, _ = zb(reply(200, {"Credits": "lots"}))
    with pytest.raises(MalformedResponse):
        run(a.probe())


# --- NeverBounce ----------------------------------------------------------------------

def test_neverbounce_check_request_and_value():
    a, rec = nb(reply(200, {"status": "success", "result": "valid", "flags": ["has_dns", "has_dns_mx"],
                            "suggested_correction": "", "execution_time": 166}))
    value = run(a.verify_email(ADDR, ctx("verify_email")))
    assert value == {"email": "ann@acme.example", "status": "valid", "provider_result": "valid",
                     "flags": ["has_dns", "has_dns_mx"], "suggested_correction": None}
    assert rec.last.method == "GET" and str(rec.last.url).startswith("https://api.neverbounce.com/v4/single/check?")
    assert dict(rec.last.url.params) == {"key": SECRET, "email": "ann@acme.example"}


@pytest.mark.parametrize("result,expected", [("valid", "valid"), ("invalid", "invalid"), ("disposable", "invalid"),
                                             ("catchall", "risky"), ("unknown", "unknown"), ("novel", "unknown")])
def test_neverbounce_result_table(result, expected):
    a, _ = nb(reply(200, {"status": "success", "result": result, "flags": []}))
    assert run(a.verify_email(ADDR, ctx("verify_email")))["status"] == expected


@pytest.mark.parametrize("app_status,kind", [
    ("auth_failure", ErrorKind.AUTH), ("bad_referrer", ErrorKind.AUTH),
    ("throttle_triggered", ErrorKind.RATE_LIMITED), ("temp_unavail", ErrorKind.TRANSIENT),
    ("general_failure", ErrorKind.INVALID_REQUEST), ("brand_new_failure", ErrorKind.MALFORMED_RESPONSE),
])
def test_neverbounce_errors_inside_http_200(app_status, kind):
    a, _ = nb(reply(200, {"status": app_status, "message": "said so", "execution_time": 3}))
    with pytest.raises(Exception) as caught:
        run(a.verify_email(ADDR, ctx("verify_email")))
    assert caught.value.kind is kind and app_status in caught.value.message


def test_neverbounce_echoed_key_is_scrubbed():
    a, _ = nb(reply(200, {"status": "auth_failure", "message": f"Invalid API key '{SECRET}'"}))
    with pytest.raises(AuthError) as caught:
        run(a.call("verify_email", ADDR, ctx("verify_email")))
    assert SECRET not in caught.value.message and SECRET not in str(caught.value)


@pytest.mark.parametrize("answer,error", [(reply(503, text="down"), TransientError),
                                          (reply(429, text="slow"), RateLimited),
                                          (reply(401, text="no"), AuthError),
                                          (reply(404, text="no such path"), ProviderRejected)])
def test_neverbounce_http_errors(answer, error):
    a, _ = nb(answer)
    with pytest.raises(error):
        run(a.verify_email(ADDR, ctx("verify_email")))


@pytest.mark.parametrize("answer", [reply(200, text="{"), reply(200, {"result": "valid"}),
                                    reply(200, {"status": "success", "flags": []}),
                                    reply(200, {"status": "success", "result": 1})])
def test_neverbounce_malformed(answer):
    a, _ = nb(answer)
    with pytest.raises(MalformedResponse):
        run(a.verify_email(ADDR, ctx("verify_email")))


def test_neverbounce_probe_reads_account_info():
    a, rec = nb(reply(200, {"status": "success", "credits": 10, "job_counts": {}}))
    run(a.probe())
    assert rec.last.url.path == "/v4/account/info" and rec.last.url.params["key"] == SECRET
    a, _ = nb(reply(200, {"status": "auth_failure", "message": "Invalid API key"}))
    with pytest.raises(AuthError):
        run(a.probe())
