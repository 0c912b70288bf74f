"""From probes and status to things an operator can act on, as pure code.

Each recommendation names the capability and provider, the evidence, and a
concrete fix: the config path of the setting to check and, where the value
came from the environment, the variable's name.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import msgspec

from actors.errors import ErrorKind
from actors.messages import ProbeResult, ProviderStatus, Recommendation
from actors.policy.health import Health


class ProviderFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the supervisor knows of a provider from its spec."""

    name: str
    capability: str
    adapter: str
    config_path: str
    env_refs: dict[str, str]
    auth_settings: list[str]
    delivers: bool
    has_probe: bool


def _setting_ref(facts: ProviderFacts, setting: str) -> str:
    ref = f"{facts.config_path}.settings.{setting}"
    var = facts.env_refs.get(setting)
    return f"{ref} (from environment variable {var})" if var else ref


def _redeploy() -> str:
    return "then redeploy with `aicmo-gateway up --config <file>`"


def for_provider(facts: ProviderFacts, status: ProviderStatus | None, probe: ProbeResult | None, now: float) -> list[Recommendation]:
    out: list[Recommendation] = []

    def add(severity: str, problem: str, evidence: str, fix: str) -> None:
        out.append(Recommendation(severity=severity, capability=facts.capability, provider=facts.name,
                                  problem=problem, evidence=evidence, fix=fix))

    failed_kind = probe.error_kind if probe is not None and not probe.ok else None
    last_kind = status.last_error_kind if status is not None else None
    error_text = (probe.error if failed_kind else None) or (status.last_error if status else None) or ""

    if ErrorKind.AUTH in (failed_kind, last_kind):
        settings = facts.auth_settings or ["<credentials>"]
        refs = " and ".join(_setting_ref(facts, s) for s in settings)
        add("critical", f"{facts.name} rejects our credentials", error_text,
            f"check {refs}: the value may be wrong, expired or lack a permission; {_redeploy()}")
    elif failed_kind in (ErrorKind.TRANSIENT, ErrorKind.TIMEOUT, ErrorKind.UNAVAILABLE, ErrorKind.CRASHED, ErrorKind.MALFORMED_RESPONSE):
        add("critical" if failed_kind is not ErrorKind.MALFORMED_RESPONSE else "warning",
            f"{facts.name} does not answer its health check ({failed_kind})", error_text,
            f"check that the service is up and that {facts.config_path}.settings (host/port or base_url) points at it; "
            f"`aicmo-gateway status` shows whether live traffic fails too")
    elif failed_kind is ErrorKind.RATE_LIMITED or (status and status.throttled_until and status.throttled_until > now):
        until = status.throttled_until if status and status.throttled_until else now
        add("warning", f"{facts.name} is rate-limiting us", f"throttled for {max(0.0, until - now):.0f}s more; {error_text}",
            f"raise the provider's limit on its side, lower this gateway's send rate, or add another provider under capabilities.{facts.capability}.providers")

    if status is not None and status.health is Health.UNHEALTHY and failed_kind is None and last_kind is not ErrorKind.AUTH:
        add("warning", f"{facts.name} is unhealthy from live traffic although its probe passes",
            f"{status.consecutive_failures} consecutive failures; last: {status.last_error}",
            "the failures are in requests, not connectivity: read `aicmo-gateway status` recent operations for the error")
    if status is not None:
        for warning in status.warnings:
            if "TLS" in warning:
                add("warning", f"{facts.name} runs without TLS verification", warning,
                    f"remove verify_tls: false from {facts.config_path}.settings, or give the server's CA (ca_file)")
            elif not status.reachable:
                add("critical", f"the actor of {facts.name} does not answer", warning,
                    "Ray restarts it on its own; if it persists, check `ray status` and the actor's logs in the Ray dashboard")
    if not facts.has_probe:
        add("info", f"{facts.name} has no health check endpoint",
            f"the {facts.adapter} API offers no free call to test it", "its health is known from live traffic only")
    return out


def for_capability(capability: str, facts: Sequence[ProviderFacts], usable: Sequence[str],
                   statuses: dict[str, ProviderStatus]) -> list[Recommendation]:
    out: list[Recommendation] = []
    delivering = [f for f in facts if f.delivers]
    usable_delivering = [f.name for f in delivering if f.name in usable]
    if not usable_delivering:
        fallback = [f.name for f in facts if not f.delivers and f.name in usable]
        note = f" (only {', '.join(fallback)} answers, and it delivers nothing)" if fallback else ""
        out.append(Recommendation(
            severity="critical", capability=capability, provider=None,
            problem=f"{capability} has no usable provider{note}",
            evidence=f"no provider that delivers passed its check: {', '.join(f.name for f in delivering) or 'none configured'}",
            fix=f"fix the provider problems listed for {capability}, or add a working provider under capabilities.{capability}.providers"))
    elif len(usable_delivering) == 1 and len(delivering) >= 1:
        out.append(Recommendation(
            severity="warning", capability=capability, provider=usable_delivering[0],
            problem=f"{capability} depends on a single provider",
            evidence=f"only {usable_delivering[0]} is usable of {len(delivering)} that deliver",
            fix=f"add or repair a second provider under capabilities.{capability}.providers so a failure can fall back"))

    latencies = {n: s.latency_ewma_ms for n, s in statuses.items() if s.latency_ewma_ms is not None and s.total_calls >= 5}
    if len(latencies) >= 2:
        for name, latency in latencies.items():
            peers = [v for n, v in latencies.items() if n != name]
            typical = statistics.median(peers)
            if typical > 0 and latency > 3 * typical and latency - typical > 50:
                out.append(Recommendation(
                    severity="info", capability=capability, provider=name,
                    problem=f"{name} is much slower than its peers",
                    evidence=f"{latency:.0f} ms on average vs {typical:.0f} ms for the others",
                    fix=f"list it later under capabilities.{capability}.providers, or check its region/base_url"))
    return out
