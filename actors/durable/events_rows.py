"""Delivery events and suppressions as rows, alike for SQLite and
PostgreSQL: the columns the lookups use, and the event itself as msgpack."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from actors.durable.store import SentMessage, StoredEvent, Suppression
from actors.events.model import DeliveryEvent, aicmo_ref

__all__ = ["EVENT_COLUMNS", "SENT_COLUMNS", "SUPPRESSION_COLUMNS", "sent_message", "event_row", "stored_event", "suppression"]

EVENT_COLUMNS = "capability, provider, event, received_at"
SUPPRESSION_COLUMNS = "capability, address, reason, added_at, provider, request_id"
SENT_COLUMNS = "capability, request_id, provider, key_hash, message_ref, rfc_message_id, payload, sent_at, resent_at"
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(DeliveryEvent).decode


def event_row(ns: str, capability: str, provider: str, e: DeliveryEvent, received_at: float) -> tuple[Any, ...]:
    """(namespace, capability, provider, event_id, request_id, key_hash,
    message_ref, state, cause, recipient, occurred_at, received_at, event)"""
    return (ns, capability, provider, e.event_id, e.request_id, e.key_hash, aicmo_ref(e.rfc_message_id), e.state,
            e.cause, (e.recipient or "").lower() or None, e.occurred_at, received_at, _encode(e))


def stored_event(row: Sequence[Any]) -> StoredEvent:
    capability, provider, blob, received_at = row
    return StoredEvent(capability=capability, provider=provider, event=_decode(bytes(blob)),
                       received_at=float(received_at))


def suppression(row: Sequence[Any]) -> Suppression:
    capability, address, reason, added_at, provider, request_id = row
    return Suppression(capability=capability, address=address, reason=reason, added_at=float(added_at),
                       provider=provider, request_id=request_id)


def sent_message(row: Sequence[Any]) -> SentMessage:
    capability, request_id, provider, key_hash, message_ref, rfc, payload, sent_at, resent_at = row
    return SentMessage(capability=capability, request_id=request_id, provider=provider, key_hash=key_hash,
                       message_ref=message_ref, rfc_message_id=rfc, payload=bytes(payload), sent_at=float(sent_at),
                       resent_at=None if resent_at is None else float(resent_at))
