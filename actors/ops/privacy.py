"""Keeping personal data out of what the gateway writes down for operators.

The audit log and anything else kept for a long time hold no raw email
address and no raw idempotency key (callers often build keys from an
address: `lead-ann@example.com-welcome`). Both are replaced by a short
SHA-256 prefix, so the same address or key can still be followed from line
to line, and an operator who knows one can find it (`hash_key`,
`hash_address`) without the file revealing any.

Secrets are masked before this, by the provider's `Redactor`; the audit log
applies one again with every secret its router's providers know.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["ADDRESS", "UNKNOWN_METHOD", "hash_address", "hash_key", "mask_addresses", "method_label", "scrub"]

# What a method name the capability does not have is recorded as: a caller
# controls that string, and could put an address there or, in metric labels,
# create a new time series with every request.
UNKNOWN_METHOD = "unknown"

# The local part people use (letters, digits, . _ % + -), so that an address
# inside a URL or a query string is masked alone: `?to=ann@example.com`.
ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def _digest(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def hash_key(key: str | None) -> str | None:
    """An idempotency key as `sha256:<16 hex>`."""
    return None if key is None else f"sha256:{_digest(key)}"


def hash_address(address: str) -> str:
    """An email address as `<email:<12 hex>>`, case-insensitive (as mailboxes mostly are)."""
    return f"<email:{_digest(address.strip().lower(), 12)}>"


def method_label(capability: str, method: str | None) -> str:
    """The method as metrics and the audit log record it: one of the
    capability's own methods, else `unknown` (`none` when there was none)."""
    from actors.payloads import METHODS

    if not method:
        return "none"
    return method if method in METHODS.get(capability, {}) else UNKNOWN_METHOD


def mask_addresses(text: str | None) -> str | None:
    if not text or "@" not in text:
        return text
    return ADDRESS.sub(lambda m: hash_address(m.group(0)), text)


def scrub(text: str | None, redact: object | None = None) -> str | None:
    """Secrets (with `redact`, a `actors.redaction.Redactor`), then addresses."""
    if text is None:
        return None
    if redact is not None:
        text = redact(text)  # type: ignore[operator]
    return mask_addresses(text)
