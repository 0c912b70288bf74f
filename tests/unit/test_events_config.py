"""`events: {verification_key: ...}` in a provider's config: checked when
the config loads (a key that is not one, an adapter without events: the
field's path and what is wrong), carried to the HTTP ingress, which builds
its events endpoint from it; the delivery policy is on only where a
provider posts events."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from actors.config import parse_config
from actors.errors import ConfigError
from actors.specs import build_spec
from actors.specs.http import build_http_spec

MG = {"name": "mg", "adapter": "mailgun", "settings": {"api_key": "key-x", "domain": "mg.example.com"}}


def config(tmp_path: Path, provider: dict[str, Any], **delivery: Any) -> dict[str, Any]:
    return {"state": {"url": str(tmp_path)}, "http": {"enabled": True, "api_keys": ["k" * 24]},
            "capabilities": {"email_sending": {"delivery": delivery, "providers": [provider]}}}


def test_keys_are_checked_at_load_with_the_field_path(tmp_path: Path) -> None:
    bad_key = {"name": "sg", "adapter": "sendgrid", "settings": {"api_key": "SG.x"},
               "events": {"verification_key": "nonsense"}}
    with pytest.raises(ConfigError, match=r"providers\[0\].*verification_key.*SendGrid"):
        parse_config(config(tmp_path, bad_key))
    no_events = {"name": "s", "adapter": "smtp", "settings": {"host": "x", "from_addr": "a@example.com"},
                 "events": {"verification_key": "k"}}
    with pytest.raises(ConfigError, match="delivery events are read for adapters mailgun, sendgrid"):
        parse_config(config(tmp_path, no_events))


def test_the_ingress_builds_its_endpoint_and_the_policy_follows_the_events(tmp_path: Path) -> None:
    from actors.http.deployment import HttpIngress

    cfg = parse_config(config(tmp_path, {**MG, "events": {"verification_key": "signing-key"}},
                              drop_fallback={"enabled": True}))
    spec = build_http_spec(cfg)
    assert spec is not None and [s.provider for s in spec.event_sources] == ["mg"]
    assert "signing-key" not in repr(spec)
    endpoint = HttpIngress._events(types.SimpleNamespace(_spec=spec))
    assert list(endpoint._intakes) == [("email_sending", "mg")]
    cap = build_spec(cfg).capabilities[0]
    assert cap.delivery_health.enabled and cap.drop_fallback.enabled and cap.suppress
    quiet = build_spec(parse_config(config(tmp_path, MG))).capabilities[0]
    assert not quiet.delivery_health.enabled and not quiet.suppress and not quiet.drop_fallback.enabled
