"""IMAP4rev1 (RFC 3501) as pure code: the dates, mailbox names and
responses the adapter reads and writes, and what a tagged NO, BAD or an
untagged BYE means as our error kind (by RFC 5530 response code first,
then words):

    LOGIN/AUTHENTICATE NO        -> AuthError ([LIMIT]/"too many" -> RateLimited,
                                    [UNAVAILABLE] -> TransientError)
    SELECT NO [NONEXISTENT]      -> ProviderRejected (the mailbox does not exist)
    BYE / "too many connections" -> RateLimited; other BYE -> TransientError
    BAD                          -> ProviderRejected (the server refused our syntax)

No I/O here: the session (imap_session.py) hands these functions what the
server said.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from actors.errors import AuthError, MalformedResponse, ProviderError, ProviderRejected, RateLimited, TransientError

__all__ = ["challenge_status", "classify_status", "encode_mailbox", "imap_date", "parse_fetch", "parse_internaldate",
           "parse_search", "status_text"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CODE = re.compile(r"^\s*\[([A-Za-z-]+)")
_FETCH_START = re.compile(rb"^\s*(\d+)\s+FETCH\s*\(", re.IGNORECASE)
_LITERAL = re.compile(rb"\{(\d+)\}\s*$")
_UID = re.compile(rb"\bUID\s+(\d+)", re.IGNORECASE)
_INTERNALDATE = re.compile(rb'INTERNALDATE\s+"([^"]+)"', re.IGNORECASE)
_RATE_WORDS = ("too many", "maximum number of connections", "connection limit", "rate limit", "try again later")


# --- responses as error kinds ------------------------------------------------------
def status_text(lines: Any) -> str:
    """The human part of a response: its last line (the tagged status text)."""
    if not lines:
        return ""
    last = lines[-1]
    if isinstance(last, (bytes, bytearray)):
        last = bytes(last).decode("utf-8", errors="replace")
    return " ".join(str(last).split())[:300]


def classify_status(stage: str, result: str, text: str, provider: str, mailbox: str | None = None) -> ProviderError:
    """A NO, BAD or BYE at `stage` (connect, login, select, search, fetch, store, noop) as our error kind."""
    match = _CODE.match(text)
    code = match.group(1).upper() if match else ""
    lower = text.lower()
    message = f"{provider}: IMAP {stage} {result}: {text}" if text else f"{provider}: IMAP {stage} {result}"
    if code in ("LIMIT", "OVERQUOTA") or any(word in lower for word in _RATE_WORDS):
        return RateLimited(message)
    if code in ("UNAVAILABLE", "INUSE", "SERVERBUG") or "shutting down" in lower:
        return TransientError(message)
    if result == "BYE":
        return TransientError(message)
    if stage == "login":
        return AuthError(message)
    if code in ("AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED", "NOPERM", "PRIVACYREQUIRED"):
        return AuthError(message)
    if stage == "select":
        if code in ("NONEXISTENT", "TRYCREATE") or any(w in lower for w in ("exist", "unknown mailbox", "not found")):
            return ProviderRejected(f"{provider}: mailbox {mailbox!r} does not exist ({text})")
        return ProviderRejected(message)
    if result == "BAD":
        return ProviderRejected(message)  # the server refused our command's syntax
    return TransientError(message)


# --- dates, names, responses --------------------------------------------------
def imap_date(moment: datetime) -> str:
    """RFC 3501 `date` (d-Mon-yyyy), month names fixed, not from the locale."""
    return f"{moment.day}-{_MONTHS[moment.month - 1]}-{moment.year}"


def parse_internaldate(value: str) -> datetime | None:
    """`25-Nov-2026 19:08:12 +0000` (day may be space-padded) as an aware datetime."""
    match = re.match(r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})", value)
    if not match:
        return None
    day, mon, year, hh, mm, ss, sign, oh, om = match.groups()
    try:
        month = [m.lower() for m in _MONTHS].index(mon.lower()) + 1
        offset = timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
        return datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset))
    except ValueError:
        return None


def encode_mailbox(name: str) -> str:
    """A mailbox name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    encoded = "".join(out)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_search(lines: list[Any]) -> list[int]:
    """UIDs from a UID SEARCH response (`* SEARCH 3 5 8`; aioimaplib hands `3 5 8`)."""
    uids: list[int] = []
    for line in lines[:-1]:  # the last line is the tagged status text
        if isinstance(line, (bytes, bytearray)):
            line = bytes(line).decode("ascii", errors="replace")
        text = str(line).strip()
        if text.upper().startswith("SEARCH"):
            text = text[6:].strip()
        if not text:
            continue
        if not re.fullmatch(r"[\d ]+", text):
            continue  # an unrelated untagged line (EXISTS, FLAGS) routed to this command
        uids.extend(int(t) for t in text.split())
    return uids


def parse_fetch(lines: list[Any]) -> list[tuple[int | None, datetime | None, bytes]]:
    """(uid, internal date, raw message) per message of a UID FETCH response.

    aioimaplib hands a fetched literal as its own item, right after the line
    that announced it with `{n}`; the items the server sent after the literal
    (INTERNALDATE may come after BODY[]) arrive as a further line. Untagged
    FETCH responses without a body (flag updates) are skipped.
    """
    records: list[tuple[int | None, datetime | None, bytes]] = []
    uid: int | None = None
    date: datetime | None = None
    body: bytes | None = None
    started = False
    expect_literal: int | None = None

    def close() -> None:
        if started and body is not None:
            records.append((uid, date, body))

    for item in lines:
        if isinstance(item, str):
            item = item.encode()
        if not isinstance(item, (bytes, bytearray)):
            raise MalformedResponse(f"FETCH response holds a {type(item).__name__}")
        data = bytes(item)
        if expect_literal is not None:
            body, expect_literal = data, None
            continue
        start = _FETCH_START.match(data)
        if start:
            close()
            started, uid, date, body = True, None, None, None
        if not started:
            continue
        if (m := _UID.search(data)) and uid is None:
            uid = int(m.group(1))
        if (m := _INTERNALDATE.search(data)) and date is None:
            date = parse_internaldate(m.group(1).decode("ascii", errors="replace"))
        literal = _LITERAL.search(data)
        if literal and re.search(rb"BODY\[\]\s*(<\d+>)?\s*\{\d+\}\s*$", data, re.IGNORECASE):
            expect_literal = int(literal.group(1))
    close()
    return records


def challenge_status(lines: list[Any]) -> str | None:
    """The `status` of an XOAUTH2 failure challenge (`+ <base64 JSON>`), if one came."""
    for line in lines:
        if isinstance(line, (bytes, bytearray)):
            line = bytes(line).decode("ascii", errors="replace")
        text = str(line).strip()
        if text.startswith("+"):
            text = text[1:].strip()
        try:
            decoded = json.loads(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError, TypeError):
            continue
        if isinstance(decoded, dict) and "status" in decoded:
            return str(decoded["status"])
    return None
