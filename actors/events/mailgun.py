"""Mailgun's webhooks (documentation.mailgun.com/docs/mailgun/user-manual/
webhooks/securing-webhooks, .../tracking-messages: event structure).

    POST <our URL>   one event per request, JSON:
      {"signature": {"timestamp": "1529006854", "token": "a8ce0e…", "signature": "d2271d12…"},
       "event-data": {"event", "id", "timestamp", "recipient", "severity",
                      "reason", "message": {"headers": {"message-id"}},
                      "user-variables": {...the send's v: variables}}}

The signature is the hex HMAC-SHA256 of timestamp + token under the
webhook signing key (Mailgun's dashboard: Sending > Webhooks > HTTP webhook
signing key), compared in constant time (the official `mailgun` SDK's
SecurityGuard.verify_webhook does the same; tests hold the two to agree).
The token is random per request: one seen twice is a replay.

Matching: the send set `h:Message-Id` (ours) and `v:request_id`,
`v:idempotency_key_hash` (actors/adapters/email/mailgun.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import msgspec

from actors.events.model import DeliveryEvent, SignatureRefused, Verified

__all__ = ["MailgunVerifier", "parse_mailgun"]

_decode = msgspec.json.Decoder().decode
# A permanent failure for these reasons is the recipient's: a bad address, or
# Mailgun's suppression lists holding it. Any other (espblock, old, generic
# without a bounce) is the provider failing to deliver.
_RECIPIENT_REASONS = frozenset({"bounce", "suppress-bounce", "suppress-unsubscribe", "suppress-complaint"})


def _body(body: bytes) -> dict[str, Any]:
    try:
        doc = _decode(body)
    except msgspec.DecodeError:
        raise SignatureRefused("malformed", "the body is not JSON: Mailgun's webhooks post "
                               "{\"signature\": {...}, \"event-data\": {...}}") from None
    if not isinstance(doc, dict):
        raise SignatureRefused("malformed", "the body must be a JSON object with `signature` and `event-data`")
    return doc


class MailgunVerifier:
    def __init__(self, signing_key: str):
        if not signing_key.strip():
            raise ValueError("events.verification_key: the Mailgun webhook signing key is empty")
        self._key = signing_key.strip().encode()

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Verified:
        sig = _body(body).get("signature")
        if not isinstance(sig, dict) or not all(isinstance(sig.get(f), (str, int)) and sig.get(f) != ""
                                                for f in ("timestamp", "token", "signature")):
            raise SignatureRefused("missing", "the body's `signature` must hold timestamp, token and signature")
        stamp, token, given = str(sig["timestamp"]), str(sig["token"]), str(sig["signature"])
        try:
            timestamp = float(int(stamp))
        except ValueError:
            raise SignatureRefused("malformed", "signature.timestamp must be epoch seconds") from None
        expected = hmac.new(self._key, (stamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given.lower()):
            raise SignatureRefused("wrong", "signature.signature does not match timestamp + token under the "
                                   "configured webhook signing key (events.verification_key)")
        return Verified(timestamp, "mg:" + token)


def _text(value: Any, limit: int = 300) -> str | None:
    return None if value is None else str(value)[:limit]


def _one(data: Any, digest: str) -> DeliveryEvent:
    if not isinstance(data, dict):
        return DeliveryEvent(provider_kind="mailgun", event_id=f"digest:{digest}", kind="unreadable", state=None,
                             occurred_at=0.0)
    kind = str(data.get("event", "")) or "unknown"
    severity, why = data.get("severity"), str(data.get("reason") or "")
    state, bounce, cause = None, None, None
    if kind in ("accepted", "delivered"):
        state = kind
    elif kind == "failed" and severity == "temporary":
        state = "deferred"
    elif kind == "failed":
        if why == "bounce":
            state, bounce, cause = "bounced", "hard", "recipient"
        else:
            state, cause = "dropped", "recipient" if why in _RECIPIENT_REASONS else "provider"
    elif kind == "rejected":
        state, cause = "dropped", "provider"
    elif kind == "complained":
        state = "complained"
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    rfc_id = headers.get("message-id")
    variables = data.get("user-variables") if isinstance(data.get("user-variables"), dict) else {}
    status = data.get("delivery-status") if isinstance(data.get("delivery-status"), dict) else {}
    try:
        occurred = float(data.get("timestamp") or 0.0)
    except (TypeError, ValueError):
        occurred = 0.0
    rfc = _text(str(rfc_id).strip().strip("<>")) if rfc_id else None
    return DeliveryEvent(
        provider_kind="mailgun", event_id=str(data.get("id") or f"digest:{digest}")[:200], kind=kind[:60],
        state=state, occurred_at=occurred, recipient=_text(data.get("recipient")), message_id=rfc,
        rfc_message_id=rfc, request_id=_text(variables.get("request_id")),
        key_hash=_text(variables.get("idempotency_key_hash")), bounce=bounce, cause=cause,
        reason=_text(status.get("description") or status.get("message") or why or None))


def parse_mailgun(body: bytes) -> list[DeliveryEvent]:
    """The request's one event (kept as `unreadable` when `event-data` is
    not an object: the request was signed, so it is Mailgun's)."""
    doc = _body(body)
    data = doc.get("event-data")
    return [_one(data, hashlib.sha256(msgspec.json.encode(data)).hexdigest()[:32])]
