"""SendGrid's Event Webhook (twilio.com/docs/sendgrid/for-developers/
tracking-events/event, .../getting-started-event-webhook-security-features).

    POST <our URL>   a JSON array of events, each {"event", "email",
      "timestamp", "sg_event_id", "sg_message_id", ...custom_args}
      X-Twilio-Email-Event-Webhook-Signature: base64 of an ECDSA P-256
        signature (DER) with SHA-256 over timestamp + the raw body
      X-Twilio-Email-Event-Webhook-Timestamp: epoch seconds

The verification key is what SendGrid shows under Mail Settings > Event
Webhook > Signature Verification: a base64 DER public key (a PEM is taken
too). It is checked with `cryptography`, as the official `sendgrid`
package's EventWebhook helper does; tests/unit/test_event_signatures.py
holds the two to agree.

`sg_message_id` is the X-Message-Id the send got back, a dot, and a
suffix per recipient. The send's `custom_args` (request_id,
idempotency_key: actors/adapters/email/sendgrid.py) come back as top-level
fields of each event.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from actors.events.keys import key_digest
from actors.events.model import DeliveryEvent, SignatureRefused, Verified

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "SendGridVerifier", "parse_sendgrid"]

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
_decode = msgspec.json.Decoder().decode
# A `dropped` with one of these reasons is the recipient's doing (SendGrid's
# own suppression lists hold the address); any other is the provider's.
_RECIPIENT_DROPS = ("bounced address", "unsubscribed address", "spam reporting address", "invalid")


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The key as SendGrid shows it (base64 DER) or as a PEM."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ValueError(f"events.verification_key: not a public key as SendGrid shows it "
                          f"(base64 of a DER P-256 key): {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("events.verification_key: SendGrid signs with ECDSA P-256; this key is another kind")
    return key


class SendGridVerifier:
    def __init__(self, public_key: str):
        self._key = load_public_key(public_key)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Verified:
        signature, stamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
        if not signature or not stamp:
            raise SignatureRefused("missing", "headers X-Twilio-Email-Event-Webhook-Signature and "
                                   "X-Twilio-Email-Event-Webhook-Timestamp are required")
        try:
            timestamp = float(int(stamp.strip()))
            der = base64.b64decode(signature.strip(), validate=True)
        except (ValueError, binascii.Error):
            raise SignatureRefused("malformed", "the signature must be base64 and the timestamp epoch seconds")
        try:
            self._key.verify(der, stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            raise SignatureRefused("wrong", "the signature does not match the body under the configured "
                                   "public key (events.verification_key)") from None
        # ECDSA signatures are random: a new signing of the same body differs, a replay does not.
        return Verified(timestamp, "sg:" + hashlib.sha256(der).hexdigest())


def _text(value: Any, limit: int = 300) -> str | None:
    return None if value is None else str(value)[:limit]


def _one(item: Any) -> DeliveryEvent:
    digest = hashlib.sha256(msgspec.json.encode(item)).hexdigest()[:32]
    if not isinstance(item, dict):
        return DeliveryEvent(provider_kind="sendgrid", event_id=f"digest:{digest}", kind="unreadable", state=None,
                             occurred_at=0.0)
    kind = str(item.get("event", "")) or "unknown"
    state, bounce, cause = None, None, None
    reason = _text(item.get("reason") or item.get("response"))
    if kind == "processed":
        state = "accepted"
    elif kind in ("delivered", "deferred"):
        state = kind
    elif kind == "bounce":
        # type "blocked": the receiving server refused the sending IP, not the address.
        blocked = item.get("type") == "blocked"
        state, bounce, cause = "bounced", "soft" if blocked else "hard", "provider" if blocked else "recipient"
    elif kind == "dropped":
        state = "dropped"
        cause = "recipient" if (reason or "").strip().lower() in _RECIPIENT_DROPS else "provider"
    elif kind == "spamreport":
        state = "complained"
    sg_id = item.get("sg_message_id")
    message_id = str(sg_id).split(".", 1)[0] if sg_id else None
    key = item.get("idempotency_key")
    try:
        occurred = float(item.get("timestamp") or 0.0)
    except (TypeError, ValueError):
        occurred = 0.0
    return DeliveryEvent(
        provider_kind="sendgrid", event_id=str(item.get("sg_event_id") or f"digest:{digest}"), kind=kind[:60],
        state=state, occurred_at=occurred, recipient=_text(item.get("email")), message_id=_text(message_id),
        rfc_message_id=_text(str(item["smtp-id"]).strip("<>")) if item.get("smtp-id") else None,
        request_id=_text(item.get("request_id")), key_hash=key_digest(str(key)) if key else None,
        bounce=bounce, cause=cause, reason=reason)


def parse_sendgrid(body: bytes) -> list[DeliveryEvent]:
    """Every item of the array, read or not: an item we cannot read is kept
    as `unreadable` (a signed body is SendGrid's; failing it would only make
    SendGrid post it again). A body that is not a JSON array is one such item."""
    try:
        items = _decode(body)
    except msgspec.DecodeError:
        items = [body.decode("utf-8", "replace")[:1000]]
    if not isinstance(items, list):
        items = [items]
    return [_one(item) for item in items]
