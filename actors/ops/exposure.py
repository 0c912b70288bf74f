"""What a deployment exposes on the network, as typed findings: the state
store reached without verified TLS, the HTTP API served in plain HTTP on an
address other than loopback, and live fault injection allowed. Pure: the
same facts become doctor's findings, the self-check's recommendations and
the warnings `up` prints.

    Exposure.STORE_CLEARTEXT   PostgreSQL over a network, sslmode disable/allow/prefer (the config opted out)
    Exposure.STORE_UNVERIFIED  PostgreSQL over a network, encrypted, the server's name unchecked
    Exposure.HTTP_CLEARTEXT    the HTTP API on a non-loopback address, no TLS proxy declared in front
    Exposure.CHAOS_ALLOWED     `chaos inject` allowed (chaos.allowed: true)
    Exposure.LITERAL_API_KEY   an http.api_keys entry written in the config file itself, not as ${VAR}
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import msgspec

from actors.durable import Transport, is_local_host, parse_state_url
from actors.errors import InvalidStateUrl
from actors.ops.doctor import Finding
from actors.policy.chaos.faults import ChaosPolicy
from actors.policy.recommendation import Recommendation

__all__ = ["Exposure", "ExposureFinding", "as_findings", "as_recommendations", "chaos_exposure", "exposures",
           "http_exposure", "literal_api_keys", "literal_api_keys_in", "store_exposure"]


class Exposure(str, enum.Enum):
    STORE_CLEARTEXT = "store_cleartext"
    STORE_UNVERIFIED = "store_unverified"
    HTTP_CLEARTEXT = "http_cleartext"
    CHAOS_ALLOWED = "chaos_allowed"
    LITERAL_API_KEY = "literal_api_key"

    def __str__(self) -> str:
        return self.value


class ExposureFinding(msgspec.Struct, frozen=True, kw_only=True):
    kind: Exposure
    severity: str            # warning | info
    problem: str             # one line
    subject: str
    detail: str
    fix: str


def store_exposure(state_url: str) -> list[ExposureFinding]:
    try:
        location = parse_state_url(state_url)
    except InvalidStateUrl:
        return []  # the config check reports it
    transport = location.transport
    if transport is Transport.CLEARTEXT:
        return [ExposureFinding(
            kind=Exposure.STORE_CLEARTEXT, severity="warning", subject=location.display,
            problem="the state store may be reached in cleartext",
            detail=f"the state store is reached over the network with sslmode={location.sslmode}: its traffic "
                   "(idempotency keys, payloads in the journal and outbox, the password exchange) may cross it in "
                   "cleartext, and the server is never checked",
            fix="set ?sslmode=verify-full&sslrootcert=/path/to/ca.pem in state.url (or sslmode=require at least)")]
    if transport is Transport.ENCRYPTED:
        return [ExposureFinding(
            kind=Exposure.STORE_UNVERIFIED, severity="info", subject=location.display,
            problem="the state store's server is not verified",
            detail=f"the state store's traffic is encrypted (sslmode={location.sslmode}) but the server's name is "
                   "not checked: a machine in the path could pose as it",
            fix="set sslmode=verify-full with sslrootcert=/path/to/ca.pem in state.url")]
    return []


def http_exposure(host: str | None, behind_tls_proxy: bool) -> list[ExposureFinding]:
    """`host`: where the HTTP API listens, None when it is off."""
    if host is None or behind_tls_proxy or _loopback(host):
        return []
    return [ExposureFinding(
        kind=Exposure.HTTP_CLEARTEXT, severity="warning", subject=f"http.host {host}",
        problem="the HTTP API is served without TLS on the network",
        detail="the HTTP API serves plain HTTP on an address other than loopback: API keys (Authorization: "
               "Bearer) and payloads cross the network in clear",
        fix="put a TLS-terminating proxy in front (README, Security) and set http.behind_tls_proxy: true; "
            "or listen on 127.0.0.1 only")]


def chaos_exposure(policy: ChaosPolicy) -> list[ExposureFinding]:
    if not policy.allowed:
        return []
    return [ExposureFinding(
        kind=Exposure.CHAOS_ALLOWED, severity="info", subject="chaos.allowed",
        problem="live fault injection is allowed",
        detail=f"live fault injection is on: anyone who can reach the cluster can fail or slow a provider for up to "
               f"{policy.max_duration_s:.0f} s (`aicmo-gateway chaos inject`)",
        fix="set chaos.allowed: false in production configs (the default)")]


def literal_api_keys(raw: Any) -> list[ExposureFinding]:
    """`raw`: the config as written (YAML, before `${VAR}`s are read). A
    key written there sits in a file that is copied, committed and shown."""
    http = raw.get("http") if isinstance(raw, dict) else None
    keys = http.get("api_keys") if isinstance(http, dict) else None
    if not isinstance(keys, list):
        return []
    return [ExposureFinding(
        kind=Exposure.LITERAL_API_KEY, severity="warning", problem="an API key is written in the config file",
        subject=f"http.api_keys[{i}]",
        detail="the key itself is in the file, which is copied, committed and shown, rather than read from the "
               "environment",
        fix="write it as \"${AICMO_API_KEY}\" (one variable per key) and set the variable where `up` runs")
        for i, key in enumerate(keys) if isinstance(key, str) and key and "${" not in key]


def literal_api_keys_in(path: str) -> list[ExposureFinding]:
    """`literal_api_keys` of a config file (nothing when it cannot be read: the config check says why)."""
    import yaml

    try:
        return literal_api_keys(yaml.safe_load(Path(path).read_text()))
    except (OSError, yaml.YAMLError):
        return []


def exposures(spec: object) -> list[ExposureFinding]:
    """Every exposure of a GatewaySpec."""
    return [*store_exposure(spec.state.url),  # type: ignore[attr-defined]
            *http_exposure(spec.http_host, spec.http_behind_tls_proxy),  # type: ignore[attr-defined]
            *chaos_exposure(spec.chaos)]  # type: ignore[attr-defined]


def as_findings(found: list[ExposureFinding]) -> list[Finding]:
    """For `aicmo-gateway doctor`."""
    return [Finding(check="security", status=f.severity, subject=f.subject, detail=f.detail, fix=f.fix) for f in found]


def as_recommendations(found: list[ExposureFinding]) -> list[Recommendation]:
    """For the self-check."""
    return [Recommendation(severity=f.severity, capability="*", provider=None, problem=f.problem,
                           evidence=f"{f.subject}: {f.detail}", fix=f.fix) for f in found]


def _loopback(host: str) -> bool:
    return host not in ("0.0.0.0", "::", "") and is_local_host(host)
