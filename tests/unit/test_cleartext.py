"""Credentials over cleartext: which settings send them, SMTP's refusal,
and the warnings status, self-check and doctor give."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from actors.adapters.email.smtp import SmtpAdapter, SmtpSettings
from actors.adapters.registry import get_adapter_class
from actors.config import parse_config
from actors.errors import ConfigError
from actors.messages import ProbeResult, ProviderStatus
from actors.ops.doctor import check_providers
from actors.provider.core import ProviderCore
from actors.specs import build_spec
from actors.supervisor.actor import build_self_check

SMTP = {"host": "mail.example.com", "port": 25, "tls_mode": "none", "username": "bot", "password": "pw-Zq81"}


def test_smtp_refuses_auth_without_tls_unless_told_so_explicitly() -> None:
    with pytest.raises(ValidationError, match="allow_cleartext_auth"):
        SmtpSettings.model_validate(SMTP)
    raw = {"capabilities": {"email_sending": {"providers": [{"name": "relay", "adapter": "smtp", "settings": SMTP}]}}}
    with pytest.raises(ConfigError) as info:  # what `up` and `config validate` print
        parse_config(raw, "gw.yaml", env={})
    assert "capabilities.email_sending.providers[0].settings" in str(info.value)
    assert "allow_cleartext_auth" in str(info.value) and "pw-Zq81" not in str(info.value)
    allowed = SmtpSettings.model_validate({**SMTP, "allow_cleartext_auth": True})
    assert SmtpAdapter.cleartext_settings(allowed) == ["tls_mode"]
    # Without AUTH, on a loopback relay, or with TLS there is nothing to refuse.
    for fine in ({**SMTP, "username": None, "password": None}, {**SMTP, "host": "127.0.0.1"},
                 {**SMTP, "tls_mode": "starttls", "port": 587}):
        assert SmtpAdapter.cleartext_settings(SmtpSettings.model_validate(fine)) == []


@pytest.mark.parametrize(("adapter", "settings", "expected"), [
    ("sendgrid", {"api_key": "k", "base_url": "http://api.sendgrid.example"}, ["base_url"]),
    ("sendgrid", {"api_key": "k", "base_url": "https://api.sendgrid.com"}, []),
    ("sendgrid", {"api_key": "k", "base_url": "http://127.0.0.1:18101"}, []),    # the local stand-in
    ("make", {"url": "http://hook.eu1.make.com/abc123token"}, ["url"]),
    ("webhook", {"url": "https://hooks.example.com/x", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                 "health_url": "http://hooks.example.com/health"}, ["health_url"]),
    ("gmail_api", {"access_token": "t", "base_url": "http://[::1]:9000"}, []),
])
def test_http_urls_to_other_hosts_are_cleartext(adapter: str, settings: dict, expected: list[str]) -> None:
    cls = get_adapter_class(adapter)
    assert cls.cleartext_settings(cls.Settings.model_validate(settings)) == expected


def spec_of(settings: dict, adapter: str = "sendgrid"):
    raw = {"capabilities": {"email_sending": {"providers": [{"name": "sg", "adapter": adapter, "settings": settings}]}}}
    return build_spec(parse_config(raw, env={}))


def test_status_self_check_and_doctor_warn() -> None:
    spec = spec_of({"api_key": "k", "base_url": "http://api.sendgrid.example", "timeout_s": 1})
    provider = spec.capabilities[0].providers[0]
    status = ProviderCore(provider).status()
    assert status.cleartext == ["base_url"]
    assert any("unencrypted" in w and "base_url" in w for w in status.warnings)   # the status table's note
    report = build_self_check(spec, {("email_sending", "sg"): ProbeResult(provider="sg", capability="email_sending",
                                                                          ok=True)},
                              {("email_sending", "sg"): status}, now=1.0)
    (rec,) = [r for r in report.recommendations if "unencrypted" in r.problem]
    assert rec.severity == "warning" and "https://" in rec.fix and "capabilities.email_sending.providers[0]" in rec.fix
    # doctor, before anything is deployed (make has no probe: nothing is called here)
    make = build_spec(parse_config({"capabilities": {"webhook_dispatch": {"providers": [
        {"name": "hook", "adapter": "make", "settings": {"url": "http://hook.eu1.make.com/abc123token"}}]}}}, env={}))
    (finding,) = [f for f in check_providers(make, timeout_s=1) if f.status == "warning"]
    assert "settings.url" in finding.detail and "https://" in (finding.fix or "")
    assert "abc123token" not in finding.detail + (finding.fix or "")
    healthy = ProviderCore(spec_of({"api_key": "k", "base_url": "https://api.sendgrid.com"}).capabilities[0]
                           .providers[0]).status()
    assert healthy.cleartext == [] and healthy.warnings == []


def test_a_status_from_an_older_actor_reads_without_the_field() -> None:
    assert ProviderStatus(name="x", capability="email_sending", adapter="smtp").cleartext == []
