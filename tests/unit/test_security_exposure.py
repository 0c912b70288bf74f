"""Issue 21: chaos that trusted the caller (item 7), PostgreSQL over
cleartext (3) and the HTTP API in plain HTTP (4). Each test fails on the
code before the fix."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from actors.config import parse_config
from actors.durable import Transport, parse_state_url
from actors.errors import ConfigError, InvalidFault, InvalidStateUrl
from actors.ops.exposure import Exposure, as_findings, as_recommendations, exposures
from actors.policy.chaos.faults import ChaosAction, ChaosPolicy, apply, check_held, new_fault, rebuilt
from actors.specs import build_spec

ALLOWED = ChaosPolicy(allowed=True)
NOW = 1_000_000.0
DAY = 86_400.0
NOOP = {"email_sending": {"providers": [{"name": "p", "adapter": "simulated"}]}}


def spec(**raw: Any) -> Any:
    return build_spec(parse_config({**raw, "capabilities": NOOP}, env={}))


# --- item 7: chaos -------------------------------------------------------------------------
def forged(injected_at: float, for_s: float, **kw: Any) -> Any:
    """A fault as a caller could stamp it: valid on its own clock."""
    return new_fault("email_sending", "p", duration_s=for_s, now=injected_at, by="mallory", fault_id="f",
                     fail_rate=1.0, policy=ALLOWED, **kw)


def test_a_fault_stamped_a_month_ahead_is_rebuilt_on_the_supervisors_clock() -> None:
    fault = forged(NOW + 30 * DAY, 60)
    held = rebuilt(fault, now=NOW, policy=ALLOWED)
    assert held.injected_at == NOW and held.expires_at == NOW + 60


def test_the_supervisor_sets_the_rebuilt_fault() -> None:
    from tests.unit.test_faults import _Actors, _gateway_spec

    from actors.supervisor import chaos_control

    gateway = _gateway_spec()
    actors = _Actors(gateway)
    event = asyncio.run(chaos_control.inject(gateway, forged(NOW + 30 * DAY, 60), actors, NOW))
    assert event.fault.expires_at == NOW + 60
    held = next(iter(actors.cores.values())).faults.fault
    assert held is not None and held.expires_at == NOW + 60


def test_retry_after_never_outlasts_the_fault() -> None:
    fault = new_fault("email_sending", "p", duration_s=60, now=NOW, by="a", fault_id="f", error="rate_limited",
                      retry_after_s=30 * DAY, policy=ALLOWED)
    assert fault.retry_after_s == 60

    class One:
        def random(self) -> float:
            return 0.0

    decision = apply(fault, One(), NOW + 50)
    assert decision.action is ChaosAction.FAIL and decision.retry_after_s == pytest.approx(10)


def test_the_provider_refuses_a_fault_meant_for_another_or_too_long() -> None:
    with pytest.raises(InvalidFault, match="no provider 'p'"):
        check_held(forged(NOW, 60), now=NOW, policy=ALLOWED, capability="email_sending", provider="other")
    month = msgspec.structs.replace(forged(NOW, 60), expires_at=NOW + 30 * DAY)  # sent to the actor directly
    with pytest.raises(InvalidFault, match="at most"):
        check_held(month, now=NOW, policy=ALLOWED, capability="email_sending", provider="p")


def test_the_provider_refuses_any_fault_when_its_config_forbids_chaos() -> None:
    with pytest.raises(InvalidFault, match="forbidden"):
        check_held(forged(NOW, 60), now=NOW, policy=ChaosPolicy(), capability="email_sending", provider="p")
    check_held(forged(NOW, 60), now=NOW, policy=ALLOWED, capability="email_sending", provider="p")


def test_chaos_is_off_by_default_and_said_when_on() -> None:
    assert spec().chaos.allowed is False and ChaosPolicy().allowed is False
    assert [f.kind for f in exposures(spec())] == []
    assert [f.kind for f in exposures(spec(chaos={"allowed": True}))] == [Exposure.CHAOS_ALLOWED]


def test_the_sandbox_and_demo_config_allows_chaos() -> None:
    from pathlib import Path

    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "default.yaml").read_text())
    assert raw["chaos"]["allowed"] == "${AICMO_CHAOS_ALLOWED:-true}"


# --- item 3: PostgreSQL over the network ------------------------------------------------------
@pytest.mark.parametrize("url", ["postgresql://app@db.internal/gw", "postgresql://app@10.0.0.5:5432/gw",
                                 "postgres://app@[2001:db8::1]/gw"])
def test_a_store_over_the_network_needs_an_sslmode(url: str) -> None:
    with pytest.raises(InvalidStateUrl, match="sslmode=verify-full"):
        parse_state_url(url)
    with pytest.raises(ConfigError, match="sslmode"):
        spec(state={"url": url})


@pytest.mark.parametrize(("url", "transport", "kind"), [
    ("postgresql://app@127.0.0.1/gw", Transport.LOCAL, None),
    ("postgresql://app@localhost:5432/gw", Transport.LOCAL, None),
    ("postgresql://app@%2Fvar%2Frun%2Fpostgresql/gw", Transport.LOCAL, None),
    ("sqlite:///tmp/x.db", Transport.LOCAL, None),
    ("postgresql://app@db.internal/gw?sslmode=verify-full&sslrootcert=/ca.pem", Transport.VERIFIED, None),
    ("postgresql://app@db.internal/gw?sslmode=require", Transport.ENCRYPTED, Exposure.STORE_UNVERIFIED),
    ("postgresql://app@db.internal/gw?sslmode=disable", Transport.CLEARTEXT, Exposure.STORE_CLEARTEXT),
    ("postgresql://app@db.internal/gw?sslmode=prefer", Transport.CLEARTEXT, Exposure.STORE_CLEARTEXT),
])
def test_the_stores_transport_is_reported(url: str, transport: Transport, kind: Exposure | None) -> None:
    assert parse_state_url(url).transport is transport
    found = exposures(spec(state={"url": url}))
    assert [f.kind for f in found] == ([kind] if kind else [])
    # doctor's findings and the self-check's recommendations carry the same facts
    assert len(as_findings(found)) == len(as_recommendations(found)) == len(found)
    assert all(f.check == "security" for f in as_findings(found))


def test_an_unknown_sslmode_is_refused() -> None:
    with pytest.raises(InvalidStateUrl, match="not one of libpq's"):
        parse_state_url("postgresql://app@db.internal/gw?sslmode=yes-please")


# --- item 4: the HTTP API on the network -------------------------------------------------------
KEY = "k" * 24


@pytest.mark.parametrize(("http", "warned"), [
    ({"host": "127.0.0.1"}, False),
    ({"host": "0.0.0.0"}, True),
    ({"host": "::"}, True),
    ({"host": "192.168.1.20"}, True),
    ({"host": "0.0.0.0", "behind_tls_proxy": True}, False),
])
def test_plain_http_on_the_network_is_warned_of(http: dict, warned: bool) -> None:
    found = exposures(spec(http={"enabled": True, "api_keys": [KEY], **http}))
    assert [f.kind for f in found] == ([Exposure.HTTP_CLEARTEXT] if warned else [])
    if warned:
        assert "TLS-terminating proxy" in found[0].fix


def test_the_self_check_and_status_carry_the_exposures() -> None:
    from actors.supervisor.findings import build_self_check

    gateway = spec(chaos={"allowed": True}, http={"enabled": True, "api_keys": [KEY], "host": "0.0.0.0"})
    report = build_self_check(gateway, {}, {}, NOW)
    problems = {r.problem for r in report.recommendations}
    assert {"live fault injection is allowed", "the HTTP API is served without TLS on the network"} <= problems



# --- item 14: API keys written in the file ------------------------------------------------------
def test_api_keys_written_in_the_file_are_warned_of(tmp_path: Any) -> None:
    from actors.ops.exposure import literal_api_keys, literal_api_keys_in

    raw = {"http": {"enabled": True, "api_keys": ["${AICMO_API_KEY}", "a-literal-key-0123456789", ""]}}
    found = literal_api_keys(raw)
    assert [(f.kind, f.subject) for f in found] == [(Exposure.LITERAL_API_KEY, "http.api_keys[1]")]
    assert all("a-literal-key" not in f.detail + f.fix + f.subject for f in found)  # never the key itself
    path = tmp_path / "gw.yaml"
    path.write_text("http:\n  api_keys: [a-literal-key-0123456789]\n")
    assert [f.subject for f in literal_api_keys_in(str(path))] == ["http.api_keys[0]"]
    assert literal_api_keys_in(str(tmp_path / "missing.yaml")) == []
