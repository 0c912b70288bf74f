"""The HTTP API without Ray or Serve: the Starlette app over a fake client,
driven by httpx through its ASGI transport. What reaches the client, every
status and problem document, keys, headers, the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from actors.errors import REQUEST_KINDS, ErrorKind, NotDeployed
from actors.http.app import build_app
from actors.http.problems import STATUS_BY_KIND
from actors.messages import Attempt, ErrorInfo, InvokeResult
from actors.specs.http import key_digest

KEY = "k" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


class FakeGateway:
    """Answers invoke_async with `answer` (an InvokeResult or an exception) and records each call."""

    def __init__(self, answer: Any = None):
        self.answer = answer if answer is not None else InvokeResult(ok=True, value={"message_id": "m"},
                                                                      request_id="r1", provider="smtp")
        self.calls: list[tuple[str, str, Any, dict[str, Any]]] = []
        self.silent: dict[str, str] = {}

    async def invoke_async(self, capability: str, method: str, payload: Any, **options: Any) -> InvokeResult:
        self.calls.append((capability, method, payload, options))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def status_async(self) -> dict[str, Any]:
        return {"namespace": "t", "capabilities": []}

    async def unanswered_async(self, capabilities: list[str]) -> dict[str, str]:
        return self.silent


def request(gw: FakeGateway, method: str, path: str, **kwargs: Any) -> httpx.Response:
    app = build_app(gw, capabilities=["email_sending", "crm_sync"], key_digests=[key_digest("other-key-0123456789"),
                                                                                   key_digest(KEY)])

    async def go() -> httpx.Response:
        # As a server would: an exception inside is answered (500), not raised to the client.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def send(gw: FakeGateway, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("json", EMAIL)
    kwargs["headers"] = {**AUTH, **kwargs.get("headers", {})}
    return request(gw, "POST", "/v1/email_sending/send_email", **kwargs)


def test_a_call_reaches_the_client_with_its_headers_and_answers_the_result() -> None:
    gw = FakeGateway()
    answer = send(gw, headers={"Idempotency-Key": '"lead-42"', "X-Dry-Run": "false", "X-Deadline-S": "2.5"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json()["value"] == {"message_id": "m"} and answer.json()["provider"] == "smtp"
    (cap, method, payload, options), = gw.calls
    assert (cap, method, payload, options["dry_run"], options["deadline_s"]) == ("email_sending", "send_email", EMAIL,
                                                                              False, 2.5)
    assert options["idempotency_key"].endswith("/lead-42")  # scoped by the caller (issue 21)


def test_queued_in_the_outbox_is_202() -> None:
    gw = FakeGateway(InvokeResult(ok=True, value={"queued": True, "delivered": False, "outbox_id": 7}, outbox_id=7))
    answer = send(gw)
    assert answer.status_code == 202 and answer.json()["outbox_id"] == 7


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": KEY},
                                     {"Authorization": "Basic " + KEY}, {"Authorization": "Bearer "}])
def test_a_missing_or_wrong_key_is_401_and_reaches_nothing(headers: dict[str, str]) -> None:
    gw = FakeGateway()
    for answer in (request(gw, "POST", "/v1/email_sending/send_email", json=EMAIL, headers=headers),
                   request(gw, "GET", "/v1/status", headers=headers)):
        assert answer.status_code == 401 and answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        doc = answer.json()
        assert doc["kind"] == "unauthorized" and doc["status"] == 401 and KEY not in answer.text
    assert gw.calls == []


@pytest.mark.parametrize("headers, body, where", [
    ({"X-Deadline-S": "soon"}, None, "X-Deadline-S"),
    ({"X-Deadline-S": "-1"}, None, "X-Deadline-S"),
    ({"X-Deadline-S": "inf"}, None, "X-Deadline-S"),
    ({"X-Dry-Run": "maybe"}, None, "X-Dry-Run"),
    ({"Idempotency-Key": '""'}, None, "Idempotency-Key"),
    ({"Idempotency-Key": "k" * 300}, None, "Idempotency-Key"),
    ({}, b'{"to": [', "not valid JSON"),
    ({}, b"", "body is empty"),
])
def test_unreadable_headers_and_bodies_are_400_naming_what(headers: dict[str, str], body: bytes | None,
                                                           where: str) -> None:
    gw = FakeGateway()
    answer = send(gw, headers=headers, **({"content": body, "json": None} if body is not None else {}))
    assert answer.status_code == 400, answer.text
    assert answer.json()["kind"] == "malformed_request" and where in answer.json()["detail"]
    assert gw.calls == []


def test_an_unknown_capability_or_endpoint_is_404_and_a_wrong_verb_405() -> None:
    answer = request(FakeGateway(), "POST", "/v1/emails/send_email", json=EMAIL, headers=AUTH)
    assert answer.status_code == 404 and answer.json()["kind"] == "unknown_method"
    assert "email_sending, crm_sync" in answer.json()["detail"]
    answer = request(FakeGateway(), "GET", "/v2/anything")
    assert answer.status_code == 404 and answer.json()["kind"] == "not_found"
    answer = request(FakeGateway(), "GET", "/v1/email_sending/send_email", headers=AUTH)
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"


EXPECTED_STATUS = {
    "invalid_request": 422, "unknown_method": 404, "rate_limited": 429, "no_available_provider": 503,
    "retry_budget_exhausted": 503, "gateway_unavailable": 503, "all_providers_failed": 502,
    "outcome_unknown": 502, "deadline_exceeded": 504, "idempotency_key_reused": 422, "store_unavailable": 503,
    "suppressed": 422,
}


def test_every_request_kind_has_the_contracts_status() -> None:
    assert {str(k) for k in REQUEST_KINDS} == set(EXPECTED_STATUS) == set(STATUS_BY_KIND)
    assert {k: v[0] for k, v in STATUS_BY_KIND.items()} == EXPECTED_STATUS


@pytest.mark.parametrize("kind", sorted(EXPECTED_STATUS))
def test_a_failed_result_is_a_problem_document(kind: str) -> None:
    attempt = Attempt(provider="smtp", ok=False, error_kind=ErrorKind.TRANSIENT, error="421", latency_ms=3.0)
    result = InvokeResult(ok=False, request_id="r9", idempotency_key="lead-9", attempts=[attempt],
                          outbox_id=12 if kind == "outcome_unknown" else None,
                          error=ErrorInfo(kind=ErrorKind(kind), message=f"{kind} happened", retry_after_s=2.2))
    answer = send(FakeGateway(result))
    doc = answer.json()
    assert answer.status_code == EXPECTED_STATUS[kind] == doc["status"]
    assert answer.headers["content-type"] == "application/problem+json"
    assert doc["type"].endswith(kind) and doc["title"] and doc["detail"] == f"{kind} happened"
    assert doc["kind"] == kind and doc["request_id"] == "r9" and doc["attempts"][0]["provider"] == "smtp"
    assert doc["instance"] == "/v1/email_sending/send_email"
    if answer.status_code in (429, 503):
        assert answer.headers["retry-after"] == "3"          # whole seconds, rounded up
    else:
        assert "retry-after" not in answer.headers
    if kind == "outcome_unknown":
        assert doc["outbox_id"] == 12


def test_a_gateway_not_deployed_is_503_with_retry_after() -> None:
    answer = send(FakeGateway(NotDeployed("no actor 'router:email_sending' in namespace 't'")))
    assert answer.status_code == 503 and answer.json()["kind"] == "gateway_unavailable"
    assert answer.headers["retry-after"] == "1"


def test_healthz_needs_no_key_and_says_how_many_routers_are_silent_but_not_which() -> None:
    gw = FakeGateway()
    assert request(gw, "GET", "/healthz").json() == {"status": "ok"}  # no list of capabilities (issue 21)
    gw.silent = {"crm_sync": "RayActorError"}
    answer = request(gw, "GET", "/healthz")
    assert answer.status_code == 503 and "1 of 2 routers do not answer" in answer.json()["detail"]
    assert "crm_sync" not in answer.text and "RayActorError" not in answer.text


def test_status_with_a_key() -> None:
    answer = request(FakeGateway(), "GET", "/v1/status", headers=AUTH)
    assert answer.status_code == 200 and answer.json()["namespace"] == "t"


def test_the_openapi_document_is_valid_and_has_one_operation_per_method() -> None:
    from openapi_spec_validator import validate

    doc = request(FakeGateway(), "GET", "/openapi.json").json()
    validate(doc)
    posts = {path for path, item in doc["paths"].items() if "post" in item}
    assert posts == {"/v1/email_sending/send_email", "/v1/crm_sync/upsert_contact", "/v1/events/{capability}/{provider}"}
    send_email = doc["paths"]["/v1/email_sending/send_email"]["post"]
    schema = doc["components"]["schemas"][send_email["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                                          .rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"to", "subject"} and schema["additionalProperties"] is False
    assert {p["name"] for p in send_email["parameters"]} == {"Idempotency-Key", "X-Dry-Run", "X-Deadline-S",
                                                             "traceparent"}
    assert {"200", "202", "400", "401", "404", "422", "429", "502", "503", "504"} <= set(send_email["responses"])
    page = request(FakeGateway(), "GET", "/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text and "/openapi.json" in page.text
    # issue 21: pinned assets with SRI, the key not kept in the browser, a CSP that allows only them
    assert "swagger-ui-dist@5.35.0/" in page.text and page.text.count('integrity="sha384-') == 2
    assert "persistAuthorization" not in page.text and "@5/" not in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_a_crash_inside_is_a_500_problem_without_the_payload() -> None:
    answer = send(FakeGateway(RuntimeError("boom")), json={**EMAIL, "text": "secret-text"})
    assert answer.status_code == 500 and answer.json()["kind"] == "internal_error"
    assert "secret-text" not in answer.text


def test_healthz_answers_from_a_cached_state_whatever_the_request_rate() -> None:
    """Issue 21: one round of router calls per HEALTH_KEPT_S, not one per request."""
    from actors.clock import Clock
    from actors.http.app import HEALTH_KEPT_S

    now = [100.0]
    asked: list[int] = []

    class Counting(FakeGateway):
        async def unanswered_async(self, capabilities: list[str]) -> dict[str, str]:
            asked.append(len(capabilities))
            await asyncio.sleep(0)
            return self.silent

    gw = Counting()
    app = build_app(gw, capabilities=["email_sending"], key_digests=[key_digest(KEY)],
                    clock=Clock(monotonic=lambda: now[0]))

    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            first = await asyncio.gather(*(client.get("/healthz") for _ in range(20)))
            now[0] += HEALTH_KEPT_S + 0.1
            later = await client.get("/healthz")
            return [r.status_code for r in [*first, later]]

    assert asyncio.run(go()) == [200] * 21
    assert len(asked) == 2  # twenty concurrent requests shared one round; the next came after the cache ran out


def test_idempotency_keys_are_scoped_by_the_api_key_that_sent_them() -> None:
    """Issue 21: one key holder reusing another's idempotency key gets
    neither its stored result nor a 422 saying the key is in use."""
    other = "other-key-0123456789"
    gw = FakeGateway(InvokeResult(ok=True, value={"message_id": "m"}, request_id="r1", provider="smtp",
                                  idempotency_key="will be the caller's own"))
    first = send(gw, headers={"Idempotency-Key": "order-42"})
    again = send(gw, headers={"Idempotency-Key": "order-42"})
    theirs = send(gw, headers={"Idempotency-Key": "order-42", "Authorization": f"Bearer {other}"})
    keys = [options["idempotency_key"] for *_, options in gw.calls]
    assert keys[0] == keys[1] != keys[2] and all(k.endswith("/order-42") for k in keys)
    assert KEY not in "".join(keys) and key_digest(KEY) not in "".join(keys)  # neither the key nor its digest
    assert [a.json()["idempotency_key"] for a in (first, again, theirs)] == ["order-42"] * 3


# --- traces (issue 23) ---------------------------------------------------------------

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_an_incoming_traceparent_is_continued_and_the_requests_own_is_returned() -> None:
    traced = InvokeResult(ok=True, value={"message_id": "m"}, request_id="r1", provider="smtp",
                          trace_id="0af7651916cd43dd8448eb211c80319c", span_id="00f067aa0ba902b7")
    gw = FakeGateway(traced)
    answer = send(gw, headers={"traceparent": PARENT})
    assert gw.calls[0][3]["traceparent"] == PARENT
    assert answer.headers["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    assert answer.json()["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


def test_a_failed_traced_request_returns_its_traceparent_too() -> None:
    failed = InvokeResult(ok=False, error=ErrorInfo(kind=ErrorKind.ALL_PROVIDERS_FAILED, message="all failed"),
                          request_id="r1", trace_id="1" * 32, span_id="2" * 16)
    answer = send(FakeGateway(failed))
    assert answer.status_code == 502 and answer.headers["traceparent"] == f"00-{'1' * 32}-{'2' * 16}-01"


@pytest.mark.parametrize("parent", ["garbage", "00-" + "0" * 32 + "-b7ad6b7169203331-01", "x" * 5000])
def test_a_traceparent_to_ignore_is_not_passed_on_and_untraced_requests_return_none(parent: str) -> None:
    gw = FakeGateway()
    answer = send(gw, headers={"traceparent": parent})
    assert answer.status_code == 200 and "traceparent" not in gw.calls[0][3]
    assert "traceparent" not in answer.headers
