"""Delivery events: the providers' signed webhooks verified, read into one
typed form, and folded into each request's delivery state.

    model.py     DeliveryEvent, the closed set of states, SignatureRefused
    guard.py     body size, stale timestamps, replayed tokens
    sendgrid.py  SendGrid's Event Webhook (ECDSA P-256)
    mailgun.py   Mailgun's webhooks (HMAC-SHA256)
    intake.py    one request: checked, then read (by adapter name: FORMATS)
    matching.py  what ties an event to the request that sent the message
    timeline.py  a request's events folded into its delivery state
    keys.py      the idempotency key's digest, as sends carry it

A request's whole timeline (its result too) is actors/ops/trace.py.
"""

from __future__ import annotations

from actors.events.guard import MAX_EVENT_BODY_BYTES, STALE_AFTER_S, ReplayGuard, check_size
from actors.events.model import DELIVERY_STATES, TERMINAL_STATES, DeliveryEvent, SignatureRefused, Verified

__all__ = ["DELIVERY_STATES", "MAX_EVENT_BODY_BYTES", "STALE_AFTER_S", "TERMINAL_STATES", "DeliveryEvent",
           "ReplayGuard", "SignatureRefused", "Verified", "check_size"]
