"""The HTTP API and the Python client on the e2e suite's `ray start` cluster,
as users reach them: `aicmo-gateway up` deploys the gateway and its Serve
ingress once for this module; httpx and curl send email through the
sandbox's SMTP and SendGrid stand-ins; every error kind gets its status and
problem document; a driver process uses the client, sync and async; `down`
removes it all.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.cluster import BIN, cli, free_port, run

pytestmark = pytest.mark.e2e

NAMESPACE = "e2e-http"
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


def failing(seed: int, **settings: Any) -> dict[str, Any]:
    return {"name": f"p{seed}", "adapter": "simulated",
            "settings": {"latency_ms": 1, "failure_rate": 1.0, "seed": seed, **settings}}


def config(smtp: Any, sendgrid_url: str, port: int, state: Path, traces: str) -> dict[str, Any]:
    """Email through the stand-ins; every other capability set up to fail in one way of its own.
    Traces go to a collector in this process (`traces`: its endpoint)."""
    return {
        "namespace": NAMESPACE,
        "telemetry": {"traces": {"endpoint": traces}},
        "state": {"url": str(state)},
        "supervisor": {"check_interval_s": 0, "drain_interval_s": 0},
        "http": {"enabled": True, "port": port, "api_keys": ["${AICMO_API_KEY}"]},
        "capabilities": {
            "email_sending": {"providers": [
                {"name": "smtp_primary", "adapter": "smtp", "settings": smtp.adapter_settings(from_addr="bot@example.com")},
                {"name": "sendgrid", "adapter": "sendgrid",
                 "settings": {"base_url": sendgrid_url, "api_key": "SG.test-key", "from_addr": "bot@example.com"}}]},
            "crm_sync": {"providers": [failing(1)]},                                            # 502
            "email_verification": {"providers": [failing(2, error="rate_limited", retry_after_s=30)]},  # 429
            "lead_enrichment": {"providers": [                                                  # 504
                {"name": "slow", "adapter": "simulated", "settings": {"latency_ms": 3000}}]},
            "social_posting": {"policy": {"routing": {"retry_budget": {"percent": 0, "min_per_s": 0}}},
                               "providers": [failing(3), failing(4)]},                          # 503, budget
            "webhook_dispatch": {"providers": [                                                 # 503, none
                {"name": "off", "adapter": "simulated", "enabled": False}]},
        },
    }


@pytest.fixture(scope="module")
def api(cluster: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from actors.sandbox.base import SandboxRunner
    from actors.sandbox.sendgrid import SendGridStandIn
    from actors.sandbox.smtp import SmtpStandIn

    from tests.support.otlp import Collector

    smtp = SmtpStandIn().start()
    collector = Collector()
    sendgrid = SendGridStandIn()
    runner = SandboxRunner([sendgrid]).start()
    key = secrets.token_urlsafe(24)
    env = {"AICMO_API_KEY": key, "AICMO_NAMESPACE": NAMESPACE}
    root = tmp_path_factory.mktemp("http")
    path = root / "gateway.yaml"
    port = free_port()
    path.write_text(yaml.safe_dump(config(smtp, sendgrid.base_url, port, root / "state", collector.endpoint)))
    try:
        up = cli(cluster, "up", "--config", str(path), env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"HTTP API ready at http://127.0.0.1:{port}" in up.stdout
        assert key not in up.stdout + up.stderr
        yield {"url": f"http://127.0.0.1:{port}", "key": key, "smtp": smtp, "sendgrid": sendgrid, "env": env,
               "cluster": cluster, "collector": collector}
    finally:
        cli(cluster, "down", env=env)
        runner.stop()
        smtp.stop()
        collector.close()


def post(api: dict, path: str, body: Any = None, key: str | None = "", **headers: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {api['key'] if key == '' else key}"} if key is not None else {}
    return httpx.post(api["url"] + path, json=body if body is not None else EMAIL, headers={**auth, **headers},
                      timeout=60)


def delivered(api: dict) -> int:
    return len(api["smtp"].received) + len(api["sendgrid"].sent)


def test_httpx_and_curl_send_email_through_smtp_then_sendgrid(api: dict) -> None:
    answer = post(api, "/v1/email_sending/send_email")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["ok"] and result["provider"] == "smtp_primary" and result["value"]["message_id"]
    assert result["idempotency_key"]                         # a send always carries one, returned to the caller
    assert [m.message["Subject"] for m in api["smtp"].received] == ["Hi"]

    curl = run("curl", "-sS", "-X", "POST", f"{api['url']}/v1/email_sending/send_email",
               "-H", f"Authorization: Bearer {api['key']}", "-H", "Content-Type: application/json",
               "-H", "Idempotency-Key: curl-1", "-d", json.dumps({**EMAIL, "subject": "From curl"}),
               "-w", "\n%{http_code}")
    body, status = curl.stdout.rsplit("\n", 1)
    assert status == "200" and json.loads(body)["idempotency_key"] == "curl-1", curl.stdout + curl.stderr
    assert api["smtp"].received[-1].message["Subject"] == "From curl"

    api["smtp"].set_faults(down=True)                        # the primary SMTP server answers 421
    try:
        answer = post(api, "/v1/email_sending/send_email", {**EMAIL, "subject": "Via SendGrid"})
    finally:
        api["smtp"].set_faults(down=False)
    result = answer.json()
    assert answer.status_code == 200 and result["provider"] == "sendgrid", answer.text
    assert [a["provider"] for a in result["attempts"]] == ["smtp_primary", "sendgrid"]
    assert api["sendgrid"].sent[-1]["body"]["subject"] == "Via SendGrid"


def test_an_incoming_traceparent_is_continued_and_the_requests_own_returned(api: dict) -> None:
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    answer = post(api, "/v1/email_sending/send_email", traceparent=f"00-{caller_trace}-{caller_span}-01")
    assert answer.status_code == 200, answer.text
    version, trace_id, span_id, flags = answer.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", caller_trace, "01") and answer.json()["trace_id"] == caller_trace
    served = answer.json()["provider"]  # whichever ranks first after the test before (it failed smtp_primary)
    names = {"email_sending.send_email", f"attempt {served}", f"provider {served}"}
    collector = api["collector"]
    assert collector.wait_for(lambda: names <= {s.name for s in collector.trace(caller_trace)}), \
        sorted(s.name for s in collector.trace(caller_trace))
    spans = {s.name: s for s in collector.trace(caller_trace)}
    root = spans["email_sending.send_email"]
    assert (root.parent_span_id, root.span_id) == (caller_span, span_id)  # the caller's span is its parent
    assert spans[f"attempt {served}"].parent_span_id == root.span_id
    assert spans[f"provider {served}"].parent_span_id == spans[f"attempt {served}"].span_id


def test_a_repeated_idempotency_key_delivers_once(api: dict) -> None:
    before = delivered(api)
    first = post(api, "/v1/email_sending/send_email", **{"Idempotency-Key": '"lead-42-welcome"'})
    again = post(api, "/v1/email_sending/send_email", **{"Idempotency-Key": "lead-42-welcome"})
    assert first.status_code == again.status_code == 200
    assert not first.json()["replayed"] and again.json()["replayed"]
    assert again.json()["value"] == first.json()["value"]
    assert delivered(api) == before + 1


@pytest.mark.parametrize("path, body, headers, status, kind", [
    ("/v1/email_sending/send_email", {"to": ["ann@example.com"]}, {}, 422, "invalid_request"),
    ("/v1/email_sending/send_email", None, {"X-Deadline-S": "soon"}, 400, "malformed_request"),
    ("/v1/email_sending/send_mail", None, {}, 404, "unknown_method"),
    ("/v1/emails/send_email", None, {}, 404, "unknown_method"),
    ("/v1/email_verification/verify_email", {"email": "ann@example.com"}, {}, 429, "rate_limited"),
    ("/v1/crm_sync/upsert_contact", {"email": "ann@example.com"}, {}, 502, "all_providers_failed"),
    ("/v1/social_posting/publish_post", {"text": "Hello"}, {"Idempotency-Key": "post-1"}, 503, "retry_budget_exhausted"),
    ("/v1/webhook_dispatch/dispatch", {"event": "lead.created", "data": {}}, {}, 503, "no_available_provider"),
    ("/v1/lead_enrichment/enrich_person", {"email": "ann@example.com"}, {"X-Deadline-S": "0.5"}, 504,
     "deadline_exceeded"),
])
def test_each_error_kind_gets_its_status_and_problem_document(api: dict, path: str, body: Any,
                                                               headers: dict[str, str], status: int, kind: str) -> None:
    answer = post(api, path, body, **headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    doc = answer.json()
    assert doc["status"] == status and doc["kind"] == kind and doc["type"].endswith(kind)
    assert doc["title"] and doc["detail"] and doc["instance"] == path
    if status in (429, 503):
        assert int(answer.headers["retry-after"]) >= (29 if kind == "rate_limited" else 1)
    if kind not in ("malformed_request",) and not path.startswith("/v1/emails/"):
        assert doc["request_id"] and isinstance(doc["attempts"], list)   # the router answered
    if kind in ("all_providers_failed", "retry_budget_exhausted", "rate_limited"):
        assert doc["attempts"] and doc["attempts"][0]["error_kind"] in ("transient", "rate_limited")


def test_missing_and_wrong_keys_get_401_and_healthz_needs_none(api: dict) -> None:
    before = delivered(api)
    for key in (None, "not-the-key-0123456789"):
        answer = post(api, "/v1/email_sending/send_email", key=key)
        assert answer.status_code == 401 and answer.json()["kind"] == "unauthorized"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(api["url"] + "/v1/status", headers={"Authorization": f"Bearer {key}"} if key else {}
                         ).status_code == 401
    assert delivered(api) == before
    status = httpx.get(api["url"] + "/v1/status", headers={"Authorization": f"Bearer {api['key']}"}, timeout=60)
    assert status.status_code == 200 and status.json()["namespace"] == NAMESPACE
    health = httpx.get(api["url"] + "/healthz", timeout=30)
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_the_openapi_document_validates_and_its_page_loads(api: dict) -> None:
    from openapi_spec_validator import validate

    doc = httpx.get(api["url"] + "/openapi.json", timeout=30).json()
    validate(doc)
    assert "/v1/email_sending/send_email" in doc["paths"] and "/v1/lead_enrichment/enrich_person" in doc["paths"]
    page = httpx.get(api["url"] + "/docs", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in page.text


DRIVER = textwrap.dedent("""\
    import asyncio, json, sys
    from actors.client import AllProvidersFailed, Gateway

    gw = Gateway.connect(namespace=sys.argv[1], address=sys.argv[2])
    out = {}
    res = gw.invoke("email_sending", "send_email", {"to": ["bob@example.com"], "subject": "Sync", "text": "Hi"},
                    idempotency_key="driver-sync", deadline_s=20).raise_for_error()
    out["sync"] = [res.provider, res.idempotency_key]

    async def main():
        return await gw.invoke_async("email_sending", "send_email",
                                     {"to": ["bob@example.com"], "subject": "Async", "text": "Hi"})
    res = asyncio.run(main()).raise_for_error()
    out["async"] = [res.provider, res.idempotency_key]
    many = gw.invoke_many("email_sending", [
        ("send_email", {"to": ["bob@example.com"], "subject": f"Many {i}", "text": "Hi"}, {"idempotency_key": f"m{i}"})
        for i in range(3)])
    out["many"] = [r.ok for r in many]
    try:
        gw.invoke("crm_sync", "upsert_contact", {"email": "bob@example.com"}).raise_for_error()
    except AllProvidersFailed as exc:
        out["raised"] = [type(exc).__name__, str(exc.kind), bool(exc.request_id), len(exc.attempts)]
    out["capabilities"] = gw.capabilities()
    print("DRIVER " + json.dumps(out))
    """)


def test_the_python_client_from_a_driver_sync_async_and_raise_for_error(api: dict, tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    cluster = api["cluster"]
    before = delivered(api)
    proc = subprocess.run([str(BIN / "python"), str(script), NAMESPACE, cluster["address"]], capture_output=True,
                          text=True, timeout=180, env={**cluster["env"], "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("DRIVER ", 1)[1])
    email_providers = ("smtp_primary", "sendgrid")   # ranked by health: SMTP was down in an earlier test
    assert out["sync"][0] in email_providers and out["sync"][1] == "driver-sync"
    assert out["async"][0] in email_providers and out["async"][1].startswith("client-")   # the client's key
    assert out["many"] == [True, True, True]
    # Its one provider failed in every round the deadline allowed (at least the first).
    assert out["raised"][:3] == ["AllProvidersFailed", "all_providers_failed", True] and out["raised"][3] >= 1
    assert "email_sending" in out["capabilities"] and "webhook_dispatch" in out["capabilities"]
    assert delivered(api) == before + 5


def test_down_removes_the_http_api(api: dict) -> None:
    down = cli(api["cluster"], "down", env=api["env"])
    assert down.returncode == 0 and "removed its HTTP API" in down.stdout, down.stdout + down.stderr
    try:
        answer = httpx.get(api["url"] + "/healthz", timeout=10)
        assert answer.status_code == 404         # Serve's proxy still listens, with no application
    except httpx.TransportError:
        pass                                    # or nothing listens any more
