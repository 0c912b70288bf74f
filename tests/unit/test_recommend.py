"""Self-check reports and recommendations from hand-built probes and statuses."""

from __future__ import annotations

from actors.config import parse_config
from actors.errors import ErrorKind
from actors.messages import ProbeResult, ProviderStatus
from actors.policy.health import Health
from actors.specs import build_spec
from actors.supervisor.actor import build_self_check

RAW = {"capabilities": {
    "email_sending": {"providers": [
        {"name": "smtp", "adapter": "simulated", "settings": {"ledger": "${SMTP_PASSWORD}"}},
        {"name": "fallback", "adapter": "noop"}]},
    "crm_sync": {"providers": [
        {"name": "airtable", "adapter": "simulated"}, {"name": "hubspot", "adapter": "simulated"}]},
}}
SPEC = build_spec(parse_config(RAW, env={"SMTP_PASSWORD": "x"}))


def probe(cap: str, name: str, ok: bool = True, kind: ErrorKind | None = None, delivers: bool = True) -> ProbeResult:
    return ProbeResult(provider=name, capability=cap, ok=ok, error_kind=kind, error=None if ok else f"{kind} error",
                       delivers=delivers)


def status(cap: str, name: str, **kw) -> ProviderStatus:
    return ProviderStatus(name=name, capability=cap, adapter="simulated", **kw)


def check(probes: list[ProbeResult], statuses: list[ProviderStatus] = ()):
    return build_self_check(SPEC, {(p.capability, p.provider): p for p in probes},
                            {(s.capability, s.name): s for s in statuses}, now=1000.0)


def test_all_served() -> None:
    report = check([probe("email_sending", "smtp"), probe("email_sending", "fallback", delivers=False),
                    probe("crm_sync", "airtable"), probe("crm_sync", "hubspot")])
    assert report.ok and all(c.served for c in report.capabilities)


def test_auth_failure_names_the_setting_and_its_variable() -> None:
    report = check([probe("email_sending", "smtp", False, ErrorKind.AUTH), probe("email_sending", "fallback", delivers=False),
                    probe("crm_sync", "airtable"), probe("crm_sync", "hubspot")])
    assert not report.ok
    email = next(c for c in report.capabilities if c.capability == "email_sending")
    assert not email.served  # the noop answers, but delivers nothing
    problems = [r for r in report.recommendations if r.provider == "smtp"]
    assert problems[0].severity == "critical" and "credentials" in problems[0].problem
    unserved = next(r for r in report.recommendations if r.provider is None)
    assert "no usable provider" in unserved.problem and "fallback" in unserved.problem


def test_auth_fix_points_at_config_path_and_env_var() -> None:
    raw = {"capabilities": {"email_sending": {"providers": [{"name": "s", "adapter": "simulated",
                                                              "settings": {"ledger": "${SMTP_PASSWORD}"}}]}}}
    spec = build_spec(parse_config(raw, env={"SMTP_PASSWORD": "x"}))
    facts = spec.capabilities[0].providers[0]
    from actors.ops.recommend import for_provider
    from actors.ops.recommend import facts_of

    f = facts_of(facts)
    f = type(f)(**{**{k: getattr(f, k) for k in f.__struct_fields__}, "auth_settings": ["ledger"]})
    recs = for_provider(f, None, probe("email_sending", "s", False, ErrorKind.AUTH), now=0)
    assert "capabilities.email_sending.providers[0].settings.ledger (from environment variable SMTP_PASSWORD)" in recs[0].fix


def test_single_usable_provider_is_a_warning_and_slow_peer_info() -> None:
    statuses = [status("crm_sync", "airtable", latency_ewma_ms=400, total_calls=50),
                status("crm_sync", "hubspot", latency_ewma_ms=40, total_calls=50)]
    report = check([probe("email_sending", "smtp"), probe("email_sending", "fallback", delivers=False),
                    probe("crm_sync", "airtable"), probe("crm_sync", "hubspot", False, ErrorKind.TIMEOUT)], statuses)
    assert report.ok
    texts = [(r.severity, r.provider, r.problem) for r in report.recommendations]
    assert ("warning", "airtable", "crm_sync depends on a single provider") in texts
    assert any(s == "info" and p == "airtable" and "slower" in t for s, p, t in texts)
    assert any(s == "critical" and p == "hubspot" for s, p, t in texts)
    assert [r.severity for r in report.recommendations] == sorted(
        [r.severity for r in report.recommendations], key=["critical", "warning", "info"].index)


def test_throttled_provider_gets_a_capacity_recommendation() -> None:
    report = check([probe("email_sending", "smtp"), probe("email_sending", "fallback", delivers=False),
                    probe("crm_sync", "airtable"), probe("crm_sync", "hubspot")],
                   [status("crm_sync", "hubspot", throttled_until=1100.0, health=Health.HEALTHY)])
    rec = next(r for r in report.recommendations if r.provider == "hubspot")
    assert "rate-limiting" in rec.problem and "100s more" in rec.evidence and "raise" in rec.fix
