"""What every email adapter shares: the message, its Message-ID, the sender
and the payload's extra headers. SMTP, SendGrid and Mailgun all build from
these, so the same request gets the same Message-ID whichever provider
sends it (a resend is recognisable as the same message)."""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
from datetime import datetime, timezone
from email.message import EmailMessage

from actors.errors import ProviderRejected
from actors.events.keys import key_digest as _key_digest
from actors.messages import CallContext
from actors.payloads import SendEmail

__all__ = ["RESERVED_HEADERS", "build_message", "custom_headers", "key_digest", "make_message_id", "sender_of"]

# Headers the gateway writes itself from the payload's fields; a payload's
# `headers` may not set them (a `To` header that differs from the envelope
# would show recipients who never get the mail). Message-ID may be set: the
# caller's own id wins over the derived one.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in ("From", "To", "Cc", "Bcc", "Subject", "Reply-To", "Sender", "Date", "MIME-Version",
              "Content-Type", "Content-Transfer-Encoding", "Return-Path")
)


# What a recipient may see of an idempotency key (actors/events/keys.py: the
# delivery events are matched back with the same digest).
key_digest = _key_digest


def make_message_id(ctx: CallContext, sender: str) -> str:
    """`<hash@sender-domain>`: the same idempotency key always gives the same id
    (from any provider), so a resend is recognisable as the same message. The
    key is hashed (`key_digest`)."""
    if ctx.idempotency_key:
        digest = key_digest(ctx.idempotency_key)
    else:
        digest = hashlib.sha256(f"request:{ctx.request_id}".encode()).hexdigest()[:32]
    domain = sender.rpartition("@")[2] or "aicmo.invalid"
    return f"<{digest}.aicmo@{domain}>"


def sender_of(payload: SendEmail, default: str | None, provider: str) -> str:
    sender = payload.from_addr or default
    if not sender:
        raise ProviderRejected(f"{provider}: no sender: give `from_addr` in the payload or the provider's settings")
    return sender


def custom_headers(payload: SendEmail, provider: str) -> tuple[dict[str, str], str | None]:
    """The payload's extra headers without Message-ID, and its Message-ID if it gave one."""
    headers: dict[str, str] = {}
    message_id: str | None = None
    for name, value in payload.headers.items():
        if name.lower() == "message-id":
            message_id = value
        elif name.lower() in RESERVED_HEADERS:
            raise ProviderRejected(f"{provider}: header {name!r} is set from the payload's fields; "
                                   "use to, subject, from_addr, reply_to instead")
        else:
            headers[name] = value
    return headers, message_id


def build_message(payload: SendEmail, ctx: CallContext, sender: str, provider: str) -> EmailMessage:
    """The RFC 5322 message: text and/or html (multipart/alternative when both).
    A payload Python's email package cannot turn into a message is refused
    (nothing was sent), never a crash that would count against the provider."""
    try:
        return _build(payload, ctx, sender, provider)
    except ProviderRejected:
        raise
    except Exception as exc:  # the email package's parsers raise all kinds on odd input
        raise ProviderRejected(f"{provider}: cannot build the message: {type(exc).__name__}: {str(exc)[:200]}") from None


def _build(payload: SendEmail, ctx: CallContext, sender: str, provider: str) -> EmailMessage:
    extra, message_id = custom_headers(payload, provider)
    utf8 = any(not a.isascii() for a in (sender, *payload.to, payload.reply_to or ""))
    msg = EmailMessage(policy=email.policy.SMTPUTF8 if utf8 else email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = ", ".join(payload.to)
    msg["Subject"] = payload.subject
    if payload.reply_to:
        msg["Reply-To"] = payload.reply_to
    msg["Date"] = email.utils.format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = message_id or make_message_id(ctx, sender)
    for name, value in extra.items():
        msg[name] = value
    if payload.text is not None:
        msg.set_content(payload.text)
        if payload.html is not None:
            msg.add_alternative(payload.html, subtype="html")
    else:
        msg.set_content(payload.html or "", subtype="html")
    return msg
