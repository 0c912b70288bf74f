"""Turning one raw RFC 5322 message into the contract's reply record.

Shared by the reply-fetching adapters (`imap`, `gmail_api`): both fetch the
whole message as bytes and hand it here, so a reply reads the same whichever
provider fetched it:

    {message_id, from_addr, subject, text, in_reply_to, received_at}

plus `from_name`, `to`, `references` and `date` (the Date header). Parsing uses
only the standard library's `email` package (policy `default`: RFC 2047
encoded words, charsets and transfer encodings are decoded). It never raises
on a malformed message: a header that cannot be parsed falls back to its raw
text, a body in an unknown charset is decoded with replacement characters.

`text` is the first text/plain part that is not an attachment; a message with
only HTML gets its first text/html part reduced to text. `received_at` is the
provider's arrival time when given (IMAP INTERNALDATE, Gmail internalDate),
else the Date header, as ISO 8601 UTC (`2026-02-01T09:30:00Z`).
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import html
import re
from datetime import datetime, timezone
from email.message import Message
from html.parser import HTMLParser
from typing import Any

__all__ = ["html_to_text", "iso_utc", "parse_reply", "parse_time"]

_MSG_ID = re.compile(r"<[^<>\s]+>")


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, to the second. A naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    """An ISO 8601 time (`Z` allowed) as an aware datetime; naive means UTC."""
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# --- headers ---------------------------------------------------------------
def _raw_header(msg: Message, name: str) -> str | None:
    """A header's text with encoded words decoded, tolerant of anything."""
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - the policy's header parser can fail on garbage
        value = None
        for key, raw in msg.raw_items() if hasattr(msg, "raw_items") else []:
            if key.lower() == name.lower():
                value = raw
                break
    if value is None:
        return None
    text = str(value)
    if "=?" in text:  # still encoded (compat parsing or a raw fallback)
        try:
            text = str(email.header.make_header(email.header.decode_header(text)))
        except Exception:  # noqa: BLE001
            pass
    return " ".join(text.split())  # unfold


def _address(msg: Message, name: str) -> tuple[str | None, str | None]:
    """(display name, address) of the first address in a header."""
    text = _raw_header(msg, name)
    if not text:
        return None, None
    display, address = email.utils.parseaddr(text)
    if not address or "@" not in address:
        # parseaddr gives up on some decoded display names (commas, quotes):
        # take what looks like the address.
        match = re.search(r"<([^<>\s]+@[^<>\s]+)>", text) or re.search(r"([^\s<>\"',;]+@[^\s<>\"',;]+)", text)
        if not match:
            return (display or text or None), None
        address = match.group(1)
    return (display or None), address


def _addresses(msg: Message, name: str) -> list[str]:
    text = _raw_header(msg, name)
    if not text:
        return []
    return [addr for _, addr in email.utils.getaddresses([text]) if addr]


def _message_ids(msg: Message, name: str) -> list[str]:
    text = _raw_header(msg, name) or ""
    return _MSG_ID.findall(text)


def _first_message_id(msg: Message, name: str) -> str | None:
    ids = _message_ids(msg, name)
    if ids:
        return ids[0]
    text = (_raw_header(msg, name) or "").strip()
    return text or None  # a malformed id is still the best we have


def _date(msg: Message) -> datetime | None:
    text = _raw_header(msg, "Date")
    if not text:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# --- body ------------------------------------------------------------------
def _is_attachment(part: Message) -> bool:
    try:
        disposition = (part.get("Content-Disposition") or "").split(";", 1)[0].strip().lower()
    except Exception:  # noqa: BLE001
        return False
    return disposition == "attachment"


def _decoded(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined] # policy.default: EmailMessage
        if isinstance(content, str):
            return content
    except Exception:  # noqa: BLE001 - unknown charset, broken base64, ...
        pass
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, errors="replace")
        except LookupError:
            return payload.decode("utf-8", errors="replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _body_text(msg: Message) -> str:
    plain: Message | None = None
    rich: Message | None = None
    for part in msg.walk():
        if part.is_multipart() or _is_attachment(part):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and plain is None:
            plain = part
        elif ctype == "text/html" and rich is None:
            rich = part
    if plain is not None:
        return _normalise(_decoded(plain))
    if rich is not None:
        return html_to_text(_decoded(rich))
    if not msg.is_multipart() and msg.get_content_maintype() == "text":
        return _normalise(_decoded(msg))
    return ""


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


class _TextExtractor(HTMLParser):
    _BLOCK = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table",
              "ul", "ol", "hr", "section", "article", "header", "footer"}
    _SKIP = {"script", "style", "head", "title", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Readable text from HTML: scripts and styles dropped, block elements on
    their own lines, entities decoded, runs of blank space collapsed."""
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # noqa: BLE001 - html.parser is lenient, but never let markup crash a fetch
        text = html.unescape(re.sub(r"<[^>]*>", " ", markup))
    lines = [" ".join(line.split()) for line in text.replace("\xa0", " ").splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


# --- the record --------------------------------------------------------------
def parse_reply(raw: bytes, *, received_at: datetime | None = None, fallback_id: str | None = None) -> dict[str, Any]:
    """The reply record of one raw message. Never raises on bad input."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    from_name, from_addr = _address(msg, "From")
    date = _date(msg)
    arrived = received_at or date
    return {
        "message_id": _first_message_id(msg, "Message-ID") or fallback_id,
        "from_addr": from_addr,
        "from_name": from_name,
        "to": _addresses(msg, "To"),
        "subject": _raw_header(msg, "Subject") or "",
        "text": _body_text(msg),
        "in_reply_to": _first_message_id(msg, "In-Reply-To"),
        "references": _message_ids(msg, "References"),
        "received_at": iso_utc(arrived) if arrived else None,
        "date": iso_utc(date) if date else None,
    }
