"""Every method's payload is validated before any provider sees it."""

from __future__ import annotations

import pytest

from actors.payloads import CAPABILITIES, METHODS, PayloadError, validate_payload

VALID = {
    "send_email": {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"},
    "publish_post": {"text": "Launch day", "network": "linkedin"},
    "upsert_contact": {"email": "ann@example.com", "first_name": "Ann", "fields": {"score": 3}},
    "enrich_person": {"first_name": "Ann", "last_name": "Lee", "domain": "example.com"},
    "verify_email": {"email": "ann@example.com"},
    "fetch_replies": {"since": "2026-11-01T00:00:00Z", "limit": 20},
    "dispatch": {"event": "lead.created", "data": {"id": 1}},
}

INVALID = [
    ("send_email", {"to": "ann@example.com", "subject": "Hi", "text": "x"}, "$.to"),
    ("send_email", {"to": [], "subject": "Hi", "text": "x"}, "at least one"),
    ("send_email", {"to": ["not-an-address"], "subject": "Hi", "text": "x"}, "to[0]"),
    ("send_email", {"to": ["a@b.co"], "subject": "Hi"}, "text` and/or `html"),
    ("send_email", {"to": ["a@b.co"], "subject": "Hi", "txt": "x"}, "unknown field `txt`"),
    ("send_email", {"to": ["a@b.co"], "subject": "Hi", "text": "x", "headers": {"X-A": "1\r\nBcc: evil@x.io"}}, "line break"),
    ("publish_post", {"text": "  "}, "empty"),
    ("publish_post", {"text": "x", "network": "myspace"}, "$.network"),
    ("upsert_contact", {"first_name": "Ann"}, "missing required field `email`"),
    ("enrich_person", {"first_name": "Ann"}, "first_name` + `last_name` + `domain"),
    ("verify_email", {"email": 42}, "$.email"),
    ("fetch_replies", {"limit": 0}, "between 1 and 1000"),
    ("fetch_replies", {"since": "yesterday"}, "ISO 8601"),
    ("dispatch", {"event": "x"}, "missing required field `data`"),
]


def spec(method: str):
    return next(m for cap in METHODS.values() for m in cap.values() if m.name == method)


def test_every_capability_of_the_contract_has_its_method() -> None:
    assert set(CAPABILITIES) == {"email_sending", "social_posting", "crm_sync", "lead_enrichment",
                                 "email_verification", "reply_fetching", "webhook_dispatch"}
    assert {m for cap in METHODS.values() for m in cap} == set(VALID)


@pytest.mark.parametrize("method", sorted(VALID))
def test_valid_payloads_become_structs(method: str) -> None:
    struct = validate_payload(spec(method), VALID[method])
    assert type(struct) is spec(method).payload
    assert validate_payload(spec(method), struct) is struct


@pytest.mark.parametrize(("method", "payload", "needle"), INVALID)
def test_invalid_payloads_say_what_and_where(method: str, payload: dict, needle: str) -> None:
    with pytest.raises(PayloadError) as info:
        validate_payload(spec(method), payload)
    assert needle in str(info.value)


@pytest.mark.parametrize("payload", [None, [1, 2], "text", 3])
def test_non_objects_are_refused(payload) -> None:
    with pytest.raises(PayloadError, match="takes an object"):
        validate_payload(spec("send_email"), payload)


def test_a_field_name_that_is_not_valid_unicode_is_refused_not_raised() -> None:
    # msgspec's own error for an unknown field cannot encode a lone surrogate in its name.
    with pytest.raises(PayloadError, match="lone surrogate") as caught:
        validate_payload(spec("dispatch"), {"event": "x", "data": {}, "\ud800": 1})
    assert caught.value.path == "$['\\ud800']"
