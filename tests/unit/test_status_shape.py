"""ProviderStatus shows a HealthSnapshot's fields flat (the shape of
`status --json` and /v1/status): the two structs must not drift apart, and
the copy goes both ways through one list of fields."""

from __future__ import annotations

import msgspec

from actors.errors import ErrorKind
from actors.messages import HEALTH_FIELDS, ProviderStatus
from actors.policy.health import Health, HealthSnapshot


def test_every_health_field_is_shown_with_the_same_type() -> None:
    snapshot = {f.name: f.type for f in msgspec.structs.fields(HealthSnapshot)}
    status = {f.name: f.type for f in msgspec.structs.fields(ProviderStatus)}
    assert set(HEALTH_FIELDS) == set(snapshot) - {"state"}
    assert {f: status[f] for f in HEALTH_FIELDS} == {f: snapshot[f] for f in HEALTH_FIELDS}
    assert status["health"] == snapshot["state"]


def test_the_wire_shape_stays_flat() -> None:
    h = HealthSnapshot(state=Health.HEALTHY, consecutive_successes=7, total_calls=9, total_ok=8, latency_ms=12.5,
                       last_error="x", last_error_kind=ErrorKind.TIMEOUT, last_checked=1000.0)
    shown = ProviderStatus.from_health(h, name="a", capability="email_sending", adapter="smtp").to_dict()
    assert shown["health"] == "healthy" and shown["consecutive_successes"] == 7 and shown["last_error_kind"] == "timeout"
    assert not any(isinstance(v, dict) for v in shown.values())


def test_a_status_gives_its_snapshot_back() -> None:
    h = HealthSnapshot(state=Health.DEGRADED, consecutive_failures=2, throttled_until=2000.0, cooldown_until=None)
    status = ProviderStatus.from_health(h, name="a", capability="email_sending", adapter="smtp")
    assert status.health_snapshot() == h
    assert status.health_snapshot(Health.UNHEALTHY) == msgspec.structs.replace(h, state=Health.UNHEALTHY)
