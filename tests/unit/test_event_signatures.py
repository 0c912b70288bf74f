"""Delivery-event webhooks are verified as the providers sign them: held
against the official libraries (the `sendgrid` package's EventWebhook
helper, the `mailgun` SDK's SecurityGuard.verify_webhook), and refused when
tampered with, signed under another key, stale, replayed or too large.
Fuzzed bodies never crash the intake and are never accepted unsigned."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.events import MAX_EVENT_BODY_BYTES, ReplayGuard, SignatureRefused
from actors.events.intake import EventIntake
from actors.events.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER

NOW = 1_760_000_000.0


# --- SendGrid -----------------------------------------------------------------------------

def sg_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()   # as SendGrid's settings page shows it


def sg_sign(private: ec.EllipticCurvePrivateKey, body: bytes, stamp: int) -> dict[str, str]:
    signature = private.sign(str(stamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: str(stamp)}


SG_BODY = json.dumps([{"email": "a@example.com", "timestamp": int(NOW), "event": "processed",
                       "sg_event_id": "ev1", "sg_message_id": "abc123.filter0001.1.2.0",
                       "request_id": "r1"}]).encode()


def test_sendgrid_agrees_with_the_official_helper() -> None:
    sendgrid = pytest.importorskip("sendgrid.helpers.eventwebhook")
    private, public = sg_keys()
    headers = sg_sign(private, SG_BODY, int(NOW))
    official = sendgrid.EventWebhook(public)
    assert official.verify_signature(SG_BODY.decode(), headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])
    [event] = EventIntake("sendgrid", public).accept(SG_BODY, headers, NOW)
    assert (event.state, event.message_id, event.request_id) == ("accepted", "abc123", "r1")
    # Tampered: both refuse.
    tampered = SG_BODY.replace(b"processed", b"delivered")
    assert not official.verify_signature(tampered.decode(), headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])
    with pytest.raises(SignatureRefused) as refused:
        EventIntake("sendgrid", public).accept(tampered, headers, NOW)
    assert refused.value.reason == "wrong"


def test_sendgrid_takes_the_key_as_pem_too() -> None:
    private, public = sg_keys()
    pem = "-----BEGIN PUBLIC KEY-----\n" + public + "\n-----END PUBLIC KEY-----\n"
    assert EventIntake("sendgrid", pem).accept(SG_BODY, sg_sign(private, SG_BODY, int(NOW)), NOW)


@pytest.mark.parametrize("case", ["wrong_key", "timestamp_changed", "missing", "not_base64", "stale", "future"])
def test_sendgrid_refusals(case: str) -> None:
    private, public = sg_keys()
    headers = sg_sign(private, SG_BODY, int(NOW))
    if case == "wrong_key":
        headers = sg_sign(sg_keys()[0], SG_BODY, int(NOW))
    elif case == "timestamp_changed":
        headers[TIMESTAMP_HEADER] = str(int(NOW) + 1)
    elif case == "missing":
        del headers[SIGNATURE_HEADER]
    elif case == "not_base64":
        headers[SIGNATURE_HEADER] = "%%%"
    elif case in ("stale", "future"):
        headers = sg_sign(private, SG_BODY, int(NOW) + (-301 if case == "stale" else 301))
    with pytest.raises(SignatureRefused) as refused:
        EventIntake("sendgrid", public).accept(SG_BODY, headers, NOW)
    expected = {"wrong_key": "wrong", "timestamp_changed": "wrong", "missing": "missing", "not_base64": "malformed",
                "stale": "stale", "future": "stale"}[case]
    assert refused.value.reason == expected, refused.value.message


def test_sendgrid_replay_is_refused_a_new_signing_is_not() -> None:
    private, public = sg_keys()
    intake = EventIntake("sendgrid", public)
    headers = sg_sign(private, SG_BODY, int(NOW))
    intake.accept(SG_BODY, headers, NOW)
    with pytest.raises(SignatureRefused) as refused:
        intake.accept(SG_BODY, headers, NOW + 1)
    assert refused.value.reason == "replayed"
    # SendGrid retrying a batch signs it again (ECDSA signatures are random): accepted;
    # the store keeps its events once by their ids.
    assert intake.accept(SG_BODY, sg_sign(private, SG_BODY, int(NOW)), NOW + 1)


def test_a_bad_sendgrid_key_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="verification_key"):
        EventIntake("sendgrid", "not a key")
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    der = rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="P-256"):
        EventIntake("sendgrid", base64.b64encode(der).decode())


# --- Mailgun ------------------------------------------------------------------------------

MG_KEY = "key-0123456789abcdef0123456789abcdef"


def mg_body(key: str = MG_KEY, stamp: int = int(NOW), token: str = "a" * 50, event: str = "delivered") -> bytes:
    signature = hmac.new(key.encode(), f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": str(stamp), "token": token, "signature": signature},
                       "event-data": {"event": event, "id": "mg-ev-1", "timestamp": NOW, "recipient": "a@example.com",
                                      "message": {"headers": {"message-id": "d1.aicmo@example.com"}},
                                      "user-variables": {"request_id": "r1"}}}).encode()


@settings(max_examples=60, deadline=None)
@given(key=st.text(min_size=1, max_size=40).filter(str.strip), token=st.text(alphabet="0123456789abcdef", min_size=1,
       max_size=60), stamp=st.integers(min_value=0, max_value=2**40), forged=st.booleans())
def test_mailgun_agrees_with_the_official_sdk(key: str, token: str, stamp: int, forged: bool) -> None:
    security = pytest.importorskip("mailgun.security")
    signature = hmac.new(key.strip().encode(), f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    if forged:
        signature = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    official = security.SecurityGuard.verify_webhook(key.strip(), token, str(stamp), signature, max_age_seconds=0)
    body = json.dumps({"signature": {"timestamp": str(stamp), "token": token, "signature": signature},
                       "event-data": {"event": "delivered"}}).encode()
    try:
        EventIntake("mailgun", key, ReplayGuard(stale_after_s=float("inf"))).accept(body, {}, NOW)
        ours = True
    except SignatureRefused:
        ours = False
    assert ours == official == (not forged)


@pytest.mark.parametrize("case", ["wrong_key", "tampered_token", "no_signature", "stale", "not_json"])
def test_mailgun_refusals(case: str) -> None:
    body = {"wrong_key": lambda: mg_body(key="other"), "stale": lambda: mg_body(stamp=int(NOW) - 301),
            "tampered_token": lambda: mg_body().replace(b'"aaaa', b'"baaa', 1),
            "no_signature": lambda: json.dumps({"event-data": {"event": "delivered"}}).encode(),
            "not_json": lambda: b"timestamp=1&token=2&signature=3"}[case]()
    with pytest.raises(SignatureRefused) as refused:
        EventIntake("mailgun", MG_KEY).accept(body, {}, NOW)
    assert refused.value.reason == {"wrong_key": "wrong", "tampered_token": "wrong", "no_signature": "missing",
                                    "stale": "stale", "not_json": "malformed"}[case]


def test_mailgun_replayed_token_is_refused() -> None:
    intake = EventIntake("mailgun", MG_KEY)
    [event] = intake.accept(mg_body(), {}, NOW)
    assert (event.state, event.rfc_message_id, event.request_id) == ("delivered", "d1.aicmo@example.com", "r1")
    with pytest.raises(SignatureRefused) as refused:
        intake.accept(mg_body(), {}, NOW + 10)
    assert refused.value.reason == "replayed"


def test_too_large_is_refused_before_anything_is_read() -> None:
    with pytest.raises(SignatureRefused) as refused:
        EventIntake("mailgun", MG_KEY).accept(b" " * (MAX_EVENT_BODY_BYTES + 1), {}, NOW)
    assert refused.value.reason == "too_large"


# --- fuzz ---------------------------------------------------------------------------------

_, FUZZ_PUBLIC = sg_keys()


@settings(max_examples=200, deadline=None)
@given(body=st.one_of(st.binary(max_size=300), st.recursive(
           st.none() | st.booleans() | st.integers() | st.text(max_size=20),
           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
           max_leaves=20).map(lambda doc: json.dumps(doc).encode())),
       signature=st.one_of(st.none(), st.text(max_size=120)), stamp=st.one_of(st.none(), st.text(max_size=12)))
def test_unsigned_bodies_are_refused_and_never_crash(body: bytes, signature: str | None, stamp: str | None) -> None:
    headers = {k: v for k, v in ((SIGNATURE_HEADER, signature), (TIMESTAMP_HEADER, stamp)) if v is not None}
    for adapter, key in (("sendgrid", FUZZ_PUBLIC), ("mailgun", MG_KEY)):
        with pytest.raises(SignatureRefused):
            EventIntake(adapter, key).accept(body, headers, NOW)
