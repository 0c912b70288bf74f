"""The demo's delivery-events parts that need no Ray (actors/cli/demo_delivery.py):
the "no email twice, none lost" check over what the stand-ins received, and
the config it runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.cli.demo_delivery import load_demo_config, with_events
from actors.sandbox.received import Copy, check

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "default.yaml"


def test_a_drop_fallback_resend_is_not_a_duplicate_but_two_kept_copies_are() -> None:
    result = check([
        Copy("a", "smtp_primary", False),                                   # once: delivered
        Copy("b", "sendgrid", True), Copy("b", "mailgun", False),           # dropped, re-sent by the other: fine
        Copy("c", "sendgrid", False), Copy("c", "mailgun", False),          # kept twice: a duplicate
        Copy("d", "sendgrid", True),                                        # dropped, never re-sent: lost
        Copy("e", "sendgrid", True), Copy("e", "mailgun", False), Copy("e", "mailgun", False),  # re-sent twice
    ])
    assert result.duplicates == ["c", "e"] and result.lost == ["d"] and result.resent == ["b", "e"]
    assert result.delivered == 4 and result.dropped_by == {"sendgrid": 3} and result.resent_via == {"mailgun": 3}


def test_a_resend_through_the_provider_that_dropped_it_is_not_a_drop_fallback() -> None:
    result = check([Copy("b", "sendgrid", True), Copy("b", "sendgrid", False)])
    assert result.resent == [] and result.lost == [] and result.duplicates == [] and result.delivered == 1


def test_the_demo_config_reads_sendgrid_and_mailgun_events_and_turns_the_drop_fallback_on() -> None:
    from actors.sandbox.sendgrid import SendGridStandIn

    sg_key = SendGridStandIn().event_public_key
    env = {"AICMO_SANDBOX_SENDGRID_EVENT_KEY": sg_key, "AICMO_SANDBOX_MAILGUN_SIGNING_KEY": "mg-key"}
    cfg = load_demo_config(DEFAULT, env)
    cap = cfg.capabilities["email_sending"]
    assert {p.name: p.events.verification_key.get_secret_value() for p in cap.providers if p.events} == {
        "sendgrid": sg_key, "mailgun": "mg-key"}
    assert cap.delivery.drop_fallback.enabled and cap.delivery.health.interval_s == 0.5
    assert cap.delivery.health.eject_ratio == 0.3       # the default thresholds
    # A config without email_sending is left as it is; one's own events settings win.
    assert with_events({"capabilities": {"crm_sync": {}}}) == {"capabilities": {"crm_sync": {}}}
    own = {"capabilities": {"email_sending": {"providers": [
        {"name": "sg", "adapter": "sendgrid", "events": {"verification_key": "${MINE}"}}]}}}
    assert with_events(own)["capabilities"]["email_sending"]["providers"][0]["events"] == {"verification_key": "${MINE}"}


def test_the_demo_config_names_a_missing_key() -> None:
    from actors.errors import ConfigError

    with pytest.raises(ConfigError, match="AICMO_SANDBOX_SENDGRID_EVENT_KEY"):
        load_demo_config(DEFAULT, {})
