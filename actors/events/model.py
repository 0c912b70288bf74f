"""Delivery events as the gateway keeps them, whatever provider sent them.

A provider's webhook (SendGrid's Event Webhook, Mailgun's webhooks) is
verified (sendgrid.py, mailgun.py), then read into `DeliveryEvent`s: one
closed set of states, and for the two that say "not delivered" the cause
sorted out before anything acts on it (a recipient's bad address must not
count against the provider; a provider's own drop must).

    accepted   the provider took the message (SendGrid processed, Mailgun accepted)
    delivered  the receiving server took it
    deferred   the receiving server said "later"; the provider keeps trying
    bounced    the receiving server refused it: `bounce` hard (permanent) or soft
    dropped    the provider did not send it: `cause` recipient (its suppression
               list holds the address) or provider (its policy, its reputation)
    complained the recipient marked it as spam
"""

from __future__ import annotations

from typing import Literal

import msgspec

from actors.errors import GatewayError

__all__ = ["DELIVERY_STATES", "TERMINAL_STATES", "BounceKind", "aicmo_ref", "DeliveryEvent", "DeliveryState", "DropCause",
           "Refusal", "RequestRefs", "SignatureRefused", "Verified"]

DeliveryState = Literal["accepted", "delivered", "deferred", "bounced", "dropped", "complained"]
DELIVERY_STATES: tuple[str, ...] = ("accepted", "delivered", "deferred", "bounced", "dropped", "complained")
# States after which the provider does nothing more with the message.
TERMINAL_STATES = frozenset({"delivered", "bounced", "dropped", "complained"})
BounceKind = Literal["hard", "soft"]
DropCause = Literal["recipient", "provider"]
Refusal = Literal["missing", "malformed", "wrong", "stale", "replayed", "too_large"]


class SignatureRefused(GatewayError):
    """A webhook request that is not the provider's: nothing of it is kept.
    `reason` is closed (Refusal); the message says what and where."""

    def __init__(self, reason: Refusal, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class Verified(msgspec.Struct, frozen=True):
    """What a good signature vouched for: when it was made, and the token
    that must not be seen twice (Mailgun's token; SendGrid's signature)."""

    timestamp: float
    token: str


class DeliveryEvent(msgspec.Struct, frozen=True, kw_only=True):
    provider_kind: str               # sendgrid | mailgun: whose format it came in
    event_id: str                    # the provider's id for the event (or a digest of it): duplicates share it
    kind: str                        # the provider's own name for it (processed, failed, ...)
    state: DeliveryState | None      # None: an event that says nothing of delivery (open, click, ...)
    occurred_at: float               # the provider's time for it, epoch seconds
    recipient: str | None = None
    message_id: str | None = None    # the provider's message id (SendGrid's X-Message-Id, Mailgun's id)
    rfc_message_id: str | None = None  # the Message-ID header, without <>
    request_id: str | None = None    # ours, when the send carried it (SendGrid custom_args, Mailgun v:)
    key_hash: str | None = None      # key_digest(idempotency key), when the send carried it
    bounce: BounceKind | None = None
    cause: DropCause | None = None
    reason: str | None = None        # the provider's words, cut short


class RequestRefs(msgspec.Struct, frozen=True):
    request_ids: tuple[str, ...] = ()
    key_hashes: tuple[str, ...] = ()
    message_refs: tuple[str, ...] = ()   # Message-ID digests (aicmo_ref)

    def __bool__(self) -> bool:
        return bool(self.request_ids or self.key_hashes or self.message_refs)


def aicmo_ref(rfc_message_id: str | None) -> str | None:
    """The digest our Message-ID carries (`<digest.aicmo@domain>`, made by
    actors/adapters/email/email_message.py), or None for someone else's id."""
    if not rfc_message_id:
        return None
    local = rfc_message_id.strip().strip("<>").partition("@")[0]
    return local[:-len(".aicmo")] if local.endswith(".aicmo") else None
