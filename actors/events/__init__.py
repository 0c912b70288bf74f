"""Delivery events: the providers' signed webhooks verified, read into one
typed form, and folded into each request's delivery state.

    model.py     DeliveryEvent, the closed set of states, SignatureRefused
    guard.py     body size, stale timestamps, replayed tokens
    sendgrid.py  SendGrid's Event Webhook (ECDSA P-256)
    mailgun.py   Mailgun's webhooks (HMAC-SHA256)
    timeline.py  a request's events folded into its delivery state
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from actors.events.guard import MAX_EVENT_BODY_BYTES, STALE_AFTER_S, ReplayGuard, check_size
from actors.events.mailgun import MailgunVerifier, parse_mailgun
from actors.events.model import DELIVERY_STATES, TERMINAL_STATES, DeliveryEvent, SignatureRefused, Verified
from actors.events.sendgrid import SendGridVerifier, parse_sendgrid

__all__ = ["DELIVERY_STATES", "FORMATS", "MAX_EVENT_BODY_BYTES", "STALE_AFTER_S", "TERMINAL_STATES",
           "DeliveryEvent", "EventFormat", "ReplayGuard", "SignatureRefused", "Verified", "Verifier",
           "check_size", "format_for"]


class Verifier(Protocol):
    def verify(self, body: bytes, headers: Mapping[str, str]) -> Verified: ...


class EventFormat(Protocol):
    verifier: Callable[[str], Verifier]
    parse: Callable[[bytes], list[DeliveryEvent]]


class _Format:
    def __init__(self, verifier: Callable[[str], Verifier], parse: Callable[[bytes], list[DeliveryEvent]]):
        self.verifier = verifier
        self.parse = parse


# By adapter name (the `adapter:` of a provider's config).
FORMATS: dict[str, _Format] = {
    "sendgrid": _Format(SendGridVerifier, parse_sendgrid),
    "mailgun": _Format(MailgunVerifier, parse_mailgun),
}


def format_for(adapter: str) -> _Format | None:
    return FORMATS.get(adapter)
