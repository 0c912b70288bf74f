"""email_sending through the router on a real local Ray: smtp -> sendgrid -> mailgun,
each against its stand-in on loopback (a real SMTP server, the HTTP APIs)."""

from __future__ import annotations

import hashlib
import socket
import time
from typing import Any

import pytest

from actors.errors import ErrorKind
from actors.messages import InvokeResult
from actors.policy.health import Health
from actors.sandbox.base import SandboxRunner
from actors.sandbox.smtp import SmtpStandIn
from tests.adapters.email.conftest import MAILGUN_DOMAIN, MAILGUN_KEY, SENDGRID_KEY, SMTP_USER

pytestmark = pytest.mark.ray

EMAIL = {"to": ["ann@example.com"], "subject": "Welcome", "text": "Hello Ann", "from_addr": SMTP_USER}


def config(smtp: SmtpStandIn, http: SandboxRunner, **smtp_settings: Any) -> dict[str, Any]:
    return {
        "policy": {
            # Strict priority keeps the order of attempts predictable; a 451
            # names no wait, so throttle long enough to see it in the next request.
            "routing": {"ranking": "actors.policy.ranking:configured_order", "attempt_timeout_s": 5},
            "health": {"default_throttle_s": 30},
        },
        "capabilities": {"email_sending": {"providers": [
            {"name": "smtp", "adapter": "smtp", "settings": smtp.adapter_settings(**smtp_settings)},
            {"name": "sendgrid", "adapter": "sendgrid",
             "settings": {"base_url": http.url("sendgrid"), "api_key": SENDGRID_KEY}},
            {"name": "mailgun", "adapter": "mailgun",
             "settings": {"base_url": http.url("mailgun"), "api_key": MAILGUN_KEY, "domain": MAILGUN_DOMAIN}},
        ]}},
    }


def attempts(res: InvokeResult) -> list[tuple[str, ErrorKind | None]]:
    return [(a.provider, a.error_kind) for a in res.attempts]


def statuses(ray: Any, gw: Any) -> dict[str, Any]:
    return {p.name: p for p in ray.get(gw.router("email_sending").status.remote()).providers}


def test_smtp_delivers_over_starttls_with_auth(gateway, smtp_server: SmtpStandIn, http_sandbox: SandboxRunner) -> None:
    gw = gateway(config(smtp_server, http_sandbox))
    res = gw.invoke("email_sending", "send_email", EMAIL, idempotency_key="lead-1-welcome")
    assert res.ok and res.provider == "smtp" and attempts(res) == [("smtp", None)]
    (mail,) = smtp_server.received
    assert mail.tls and mail.login == SMTP_USER and mail.rcpt_tos == ["ann@example.com"]
    assert mail.message["Message-ID"] == res.value["message_id"] and mail.message["Subject"] == "Welcome"
    assert not http_sandbox["sendgrid"].sent and not http_sandbox["mailgun"].sent


def test_wrong_password_is_auth_then_sendgrid_serves(gateway, ray_cluster, smtp_server: SmtpStandIn,
                                                     http_sandbox: SandboxRunner) -> None:
    gw = gateway(config(smtp_server, http_sandbox, password="wrong-password"))
    res = gw.invoke("email_sending", "send_email", EMAIL, idempotency_key="lead-2-welcome")
    assert res.ok and res.provider == "sendgrid"
    assert attempts(res) == [("smtp", ErrorKind.AUTH), ("sendgrid", None)]
    assert "wrong-password" not in (res.attempts[0].error or "") and not smtp_server.received
    (sent,) = http_sandbox["sendgrid"].sent
    # The Message-ID is the one SMTP would have set: the same key, whichever provider sends.
    assert sent["body"]["headers"]["Message-ID"] == res.value["rfc_message_id"]
    assert sent["body"]["custom_args"]["idempotency_key"] == "lead-2-welcome"

    # Bad keys at SendGrid and Mailgun are auth failures too.
    http_sandbox["sendgrid"].faults.update({"reject_auth": True})
    http_sandbox["mailgun"].faults.update({"reject_auth": True})
    res = gw.invoke("email_sending", "send_email", EMAIL)
    assert res.error.kind is ErrorKind.ALL_PROVIDERS_FAILED
    assert attempts(res) == [("smtp", ErrorKind.AUTH), ("sendgrid", ErrorKind.AUTH), ("mailgun", ErrorKind.AUTH)]
    check = ray_cluster.get(gw.supervisor.run_full_check.remote(), timeout=60)
    fixes = {r.provider: r.fix for r in check.recommendations if r.severity == "critical"}
    assert "settings.password" in fixes["smtp"] and "settings.api_key" in fixes["sendgrid"]


def test_rate_limits_throttle_without_marking_unhealthy(gateway, ray_cluster, smtp_server: SmtpStandIn,
                                                        http_sandbox: SandboxRunner) -> None:
    gw = gateway(config(smtp_server, http_sandbox))
    smtp_server.set_faults(throttle_for_s=60, throttle_code=451)
    http_sandbox["sendgrid"].faults.update({"throttle_for_s": 60})
    started = time.time()
    res = gw.invoke("email_sending", "send_email", EMAIL, idempotency_key="lead-3-welcome")
    assert res.ok and res.provider == "mailgun"
    assert attempts(res) == [("smtp", ErrorKind.RATE_LIMITED), ("sendgrid", ErrorKind.RATE_LIMITED), ("mailgun", None)]
    (sent,) = http_sandbox["mailgun"].sent
    assert sent["id"] == res.value["message_id"] and sent["form"]["v:idempotency_key_hash"] == hashlib.sha256(b"key:lead-3-welcome").hexdigest()[:32]

    status = statuses(ray_cluster, gw)
    for name in ("smtp", "sendgrid"):
        assert status[name].health is not Health.UNHEALTHY and status[name].consecutive_failures == 0
        assert status[name].last_error_kind is ErrorKind.RATE_LIMITED
    # SendGrid's X-RateLimit-Reset says when: about a minute from now.
    assert started + 50 <= status["sendgrid"].throttled_until <= started + 70

    # Throttled providers are skipped; Mailgun's own 429 is a rate limit too.
    http_sandbox["mailgun"].faults.update({"throttle_for_s": 60, "retry_after_s": 60})
    res = gw.invoke("email_sending", "send_email", EMAIL)
    assert attempts(res) == [("mailgun", ErrorKind.RATE_LIMITED)] and not res.ok


def test_servers_down_fall_back_in_turn(gateway, ray_cluster, smtp_server: SmtpStandIn,
                                        http_sandbox: SandboxRunner) -> None:
    with socket.socket() as s:  # a port nobody listens on: the SMTP server is down
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    gw = gateway(config(smtp_server, http_sandbox, port=closed_port))
    res = gw.invoke("email_sending", "send_email", EMAIL)
    assert res.ok and attempts(res) == [("smtp", ErrorKind.TRANSIENT), ("sendgrid", None)]
    assert "cannot connect" in res.attempts[0].error

    http_sandbox["sendgrid"].faults.update({"down": True, "status": 503})
    res = gw.invoke("email_sending", "send_email", EMAIL)
    assert res.ok and res.provider == "mailgun"
    assert attempts(res) == [("smtp", ErrorKind.TRANSIENT), ("sendgrid", ErrorKind.TRANSIENT), ("mailgun", None)]

    http_sandbox["mailgun"].faults.update({"down": True, "status": 500})
    res = gw.invoke("email_sending", "send_email", EMAIL)
    assert res.error.kind is ErrorKind.ALL_PROVIDERS_FAILED
    # Each round tries all three in turn; rounds are tried again while the deadline allows.
    assert [kind for _, kind in attempts(res)][:3] == [ErrorKind.TRANSIENT] * 3
    assert {p for p, _ in attempts(res)} == {"smtp", "sendgrid", "mailgun"} and len(res.attempts) % 3 == 0
    assert statuses(ray_cluster, gw)["smtp"].health is Health.UNHEALTHY  # third failure in a row
