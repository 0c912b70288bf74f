"""What ties a delivery event to the request whose message it is. Every
email adapter already sends it: the request id (SendGrid custom_args,
Mailgun v:request_id), the idempotency key's digest (SendGrid's
custom_args hold the key, hashed here; Mailgun's v:idempotency_key_hash),
and our Message-ID, whose local part is that digest, or the request id's
(actors/adapters/email/email_message.py: make_message_id)."""

from __future__ import annotations

import hashlib

from actors.events.keys import key_digest
from actors.events.model import RequestRefs

__all__ = ["RequestRefs", "refs_for"]


def refs_for(request_id: str | None = None, idempotency_key: str | None = None) -> RequestRefs:
    """The references a request's events can carry."""
    request_ids, key_hashes, message_refs = [], [], []
    if request_id:
        request_ids.append(request_id)
        message_refs.append(hashlib.sha256(f"request:{request_id}".encode()).hexdigest()[:32])
    if idempotency_key:
        key_hashes.append(key_digest(idempotency_key))
        message_refs.append(key_digest(idempotency_key))
    return RequestRefs(tuple(request_ids), tuple(key_hashes), tuple(message_refs))
