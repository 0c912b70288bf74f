"""Issue 21, leaks and bounds: input echoed without bound (item 5), the
caller's deadline (6), credentials in webhook URLs (8) and raw idempotency
keys (9). Each test fails on the code before the fix."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from actors.adapters.previews import shown_url
from actors.durable import StoreUnavailable
from actors.errors import ErrorKind, PayloadError, TransientError
from actors.http.app import build_app
from actors.messages import Attempt, Decision, InvokeResult
from actors.ops.audit import MAX_ERROR_CHARS, AuditLog, audit_record
from actors.payloads import METHODS, check_options, clamp_deadline, validate_payload
from actors.redaction import Redactor
from actors.specs.http import key_digest
from tests.unit.harness import EMAIL, Harness

KEY = "k" * 24
HUGE = "x" * 1_000_000


def refused(method: str, payload: dict[str, Any], capability: str) -> str:
    with pytest.raises(PayloadError) as caught:
        validate_payload(METHODS[capability][method], payload)
    return str(caught.value)


# --- item 5: what is echoed is short; every field is bounded --------------------------
@pytest.mark.parametrize(("capability", "method", "payload"), [
    ("email_verification", "verify_email", {"email": HUGE}),
    ("email_verification", "verify_email", {"email": "no-at-sign-" + "y" * 500}),
    ("reply_fetching", "fetch_replies", {"since": HUGE}),
    ("reply_fetching", "fetch_replies", {"since": "not a time " + "y" * 50}),
    ("social_posting", "publish_post", {"text": "hi", "network": HUGE}),
    ("crm_sync", "upsert_contact", {"email": "ann@example.com", "fields": {HUGE: 1}}),
    ("email_sending", "send_email", {**EMAIL, "headers": {HUGE: "v"}}),
])
def test_a_huge_bad_value_gives_a_short_error(capability: str, method: str, payload: dict[str, Any]) -> None:
    message = refused(method, payload, capability)
    assert len(message) < 600, len(message)


@pytest.mark.parametrize(("capability", "method", "payload", "field"), [
    ("social_posting", "publish_post", {"text": "hi", "media_urls": ["https://x.example/a.png"] * 21}, "media_urls"),
    ("social_posting", "publish_post", {"text": "hi", "media_urls": ["https://x.example/" + "a" * 5000]}, "media_urls"),
    ("social_posting", "publish_post", {"text": "y" * 100_001}, "text"),
    ("email_sending", "send_email", {**EMAIL, "headers": {f"X-H{i}": "v" for i in range(51)}}, "headers"),
    ("email_sending", "send_email", {**EMAIL, "headers": {"X-Big": "v" * 2000}}, "headers"),
    ("email_sending", "send_email", {**EMAIL, "text": "t" * 2_000_001}, "text"),
    ("email_sending", "send_email", {**EMAIL, "html": "t" * 2_000_001}, "html"),
    ("email_sending", "send_email", {**EMAIL, "subject": "s" * 999}, "subject"),
    ("crm_sync", "upsert_contact", {"email": "ann@example.com", "fields": {f"f{i}": 1 for i in range(201)}}, "fields"),
    ("crm_sync", "upsert_contact", {"email": "ann@example.com", "fields": {"notes": "n" * 1_000_001}}, "fields"),
    ("webhook_dispatch", "dispatch", {"event": "e", "data": {"blob": "b" * 1_000_001}}, "data"),
])
def test_every_caller_meets_per_field_limits(capability: str, method: str, payload: dict[str, Any], field: str) -> None:
    message = refused(method, payload, capability)
    assert field in message and len(message) < 600


def test_payloads_within_the_limits_pass() -> None:
    validate_payload(METHODS["email_sending"]["send_email"], {**EMAIL, "text": "t" * 100_000,
                                                              "headers": {f"X-H{i}": "v" * 900 for i in range(50)}})
    validate_payload(METHODS["social_posting"]["publish_post"], {"text": "hi", "media_urls": ["https://x/a"] * 20})
    validate_payload(METHODS["webhook_dispatch"]["dispatch"], {"event": "e", "data": {"blob": "b" * 500_000}})


def test_audit_records_cut_long_errors_so_one_line_cannot_rotate_the_file(tmp_path: Path) -> None:
    d = Decision(at=1.0, capability="email_verification", method="verify_email", request_id="r", ok=False,
                 error_kind=ErrorKind.INVALID_REQUEST, error="bad: " + HUGE,
                 attempts=[Attempt(provider="p", ok=False, error_kind=ErrorKind.TRANSIENT, error=HUGE)])
    record = audit_record(d)
    assert len(record["error"]) <= MAX_ERROR_CHARS + 40 and len(record["attempts"][0]["error"]) <= MAX_ERROR_CHARS + 40
    log = AuditLog(tmp_path / "audit", "email_verification", max_bytes=100_000, backups=2)
    for _ in range(20):
        log.observe(d)
        log.flush()
    assert len(log.files()) == 1  # twenty lines fit one file: nothing rotated


@pytest.mark.parametrize("key", ["lead\x1b[31m", "lead-ünï", "tab\tkey", "lead\x00"])
def test_idempotency_keys_are_printable_ascii(key: str) -> None:
    with pytest.raises(PayloadError, match="printable ASCII"):
        check_options(key, None)
    gw = _FakeGateway()
    answer = _post(gw, {"Idempotency-Key": key.encode("utf-8")})
    assert answer.status_code == 400 and gw.calls == []


# --- item 6: the caller's deadline is cut to the configured one ------------------------
def test_clamp_deadline() -> None:
    assert clamp_deadline(None, 30.0, None) == 30.0
    assert clamp_deadline(1e9, 30.0, None) == 30.0
    assert clamp_deadline(5.0, 30.0, None) == 5.0
    assert clamp_deadline(1e9, 30.0, 120.0) == 120.0
    assert clamp_deadline(60.0, 30.0, 120.0) == 60.0


def test_the_router_cuts_a_huge_deadline_to_the_configured_one() -> None:
    class Longest(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    # A 5 s pause between rounds: within a 1e9 s deadline there would be rounds.
    h = Harness({"a": [TransientError("503")] * 3}, deadline_s=1, retry_backoff_ms=5000, retry_backoff_max_ms=5000)
    h.router._random = Longest()
    res = h.invoke(deadline_s=1e9)
    assert not res.ok and len(res.attempts) == 1 and h.sleeps == []


def test_the_http_api_cuts_x_deadline_s() -> None:
    gw = _FakeGateway()
    assert _post(gw, {"X-Deadline-S": "1e9"}, max_deadline_s={"email_sending": 30.0}).status_code == 200
    assert _post(gw, {"X-Deadline-S": "5"}, max_deadline_s={"email_sending": 30.0}).status_code == 200
    assert [c[3]["deadline_s"] for c in gw.calls] == [30.0, 5.0]


def test_the_http_spec_carries_each_capabilitys_longest_deadline() -> None:
    from actors.config import parse_config
    from actors.specs.http import build_http_spec

    cfg = parse_config({"http": {"enabled": True, "api_keys": [KEY]},
                        "policy": {"routing": {"deadline_s": 20}},
                        "capabilities": {
                            "email_sending": {"providers": [{"name": "n", "adapter": "noop"}]},
                            "crm_sync": {"providers": [{"name": "n", "adapter": "noop"}],
                                         "policy": {"routing": {"max_deadline_s": 90}}}}}, env={})
    spec = build_http_spec(cfg)
    assert spec is not None and spec.max_deadline_s == {"email_sending": 20.0, "crm_sync": 90.0}


# --- item 8: webhook URL credentials -----------------------------------------------------
def test_a_dry_run_shows_a_webhook_url_without_its_userinfo() -> None:
    shown = shown_url("https://hookuser:s3cr3t-pa55word@hooks.example.com:8443/t/abcdef?sig=1")
    assert shown == "https://hooks.example.com:8443/***"
    assert "s3cr3t" not in shown and "hookuser" not in shown


def test_the_redactor_masks_a_urls_userinfo_password_everywhere() -> None:
    redact = Redactor([])
    text = redact("POST https://hookuser:s3cr3t-pa55word@hooks.example.com/x failed; retry postgresql://a:pw9@db/x")
    assert "s3cr3t" not in text and "pw9" not in text and "hookuser" in text
    known = Redactor(["https://u:an0ther-secret-value@h.example.com/path"])
    assert "an0ther-secret-value" not in known("the server said: bad password an0ther-secret-value")


# --- item 9: raw idempotency keys --------------------------------------------------------
def test_a_key_reused_or_left_unstored_is_named_nowhere(caplog: pytest.LogCaptureFixture) -> None:
    secret_key = "lead-ann@example.com-welcome-7f3a9c"
    h = Harness({"a": [{"message_id": "m1"}, {"message_id": "m2"}]})
    assert h.invoke(idempotency_key=secret_key).ok
    reused = h.invoke({**EMAIL, "subject": "Another"}, idempotency_key=secret_key)
    assert reused.error is not None and reused.error.kind is ErrorKind.IDEMPOTENCY_KEY_REUSED
    assert secret_key not in reused.error.message
    status = json.dumps(msgspec.to_builtins(list(h.router.finishing.recent)))
    assert secret_key not in status

    async def failing(*rows: Any) -> None:
        raise StoreUnavailable("sqlite:///x", "disk gone")

    records = h.router.results
    records._finishes = failing  # the store refuses the result: a warning is logged
    with caplog.at_level(logging.WARNING, logger="aicmo.router"):
        asyncio.run(records.release(secret_key, InvokeResult(ok=True, request_id="r"), "fp", h.clock.monotonic() + 1))
    assert caplog.records and all(secret_key not in r.getMessage() for r in caplog.records)


def test_recent_operations_record_an_unknown_method_as_unknown() -> None:
    h = Harness({"a": [{"message_id": "m1"}]})
    odd = "send_to_ann@example.com_" + "z" * 300
    res = h.invoke(method=odd)
    assert res.error is not None and res.error.kind is ErrorKind.UNKNOWN_METHOD
    op = h.router.finishing.recent[-1]
    assert op.method == "unknown" and "ann@example.com" not in (op.error or "") and "zzz" not in (op.error or "")


# --- helpers -----------------------------------------------------------------------------
class _FakeGateway:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, Any]]] = []

    async def invoke_async(self, capability: str, method: str, payload: Any, **options: Any) -> InvokeResult:
        self.calls.append((capability, method, payload, options))
        return InvokeResult(ok=True, value={"message_id": "m"}, request_id="r1", provider="smtp")


def _post(gw: _FakeGateway, headers: dict[str, Any], **app_options: Any) -> httpx.Response:
    app = build_app(gw, capabilities=["email_sending"], key_digests=[key_digest(KEY)], **app_options)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.post("/v1/email_sending/send_email", json=EMAIL,
                                     headers={"Authorization": f"Bearer {KEY}", **headers})

    return asyncio.run(go())
