"""Keeping personal data out of what the gateway writes down for operators.

The audit log and anything else kept for a long time hold no raw email
address and no raw idempotency key (callers often build keys from an
address: `lead-ann@example.com-welcome`). Both are replaced by a short
keyed hash (HMAC-SHA256 with the deployment's secret `key`), so the same
address or key can still be followed from line to line, and an operator
who knows one can find it (`hash_key`, `hash_address` with the same key)
without the file revealing any. An unkeyed hash would not do: addresses
and keys are guessable, and a dictionary of a few dozen guesses reversed
every plain SHA-256 prefix in a real audit file.

Without a key (`key=None`) the old unkeyed SHA-256 prefix is used: only a
fallback for tests and tools that have no deployment secret at hand.

Secrets are masked before this, by the provider's `Redactor`; the audit log
applies one again with every secret its router's providers know.
"""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["ADDRESS", "UNKNOWN_METHOD", "hash_address", "hash_key", "hide_method", "mask_addresses", "method_label",
           "scrub"]

# What a method name the capability does not have is recorded as: a caller
# controls that string, and could put an address there or, in metric labels,
# create a new time series with every request.
UNKNOWN_METHOD = "unknown"

# The local part people use (letters, digits, . _ % + -), so that an address
# inside a URL or a query string is masked alone: `?to=ann@example.com`.
ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def _digest(text: str, n: int, key: bytes | None) -> str:
    data = text.encode("utf-8", "surrogatepass")
    if key is None:
        return hashlib.sha256(data).hexdigest()[:n]
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:n]


# The name of the deployment's secret, kept in the state store, that keys
# the audit log's HMACs: the same for every router, across restarts.
AUDIT_SECRET = "audit-hmac"


def hash_key(idempotency_key: str | None, key: bytes | None = None) -> str | None:
    """An idempotency key as `hmac:<16 hex>` (HMAC-SHA256 with `key`), or
    `sha256:<16 hex>` without a key (tests only)."""
    if idempotency_key is None:
        return None
    return f"{'sha256' if key is None else 'hmac'}:{_digest(idempotency_key, 16, key)}"


def hash_address(address: str, key: bytes | None = None) -> str:
    """An email address as `<email:<12 hex>>`, case-insensitive (as mailboxes mostly are)."""
    return f"<email:{_digest(address.strip().lower(), 12, key)}>"


def method_label(capability: str, method: str | None) -> str:
    """The method as metrics and the audit log record it: one of the
    capability's own methods, else `unknown` (`none` when there was none)."""
    from actors.payloads import METHODS

    if not method:
        return "none"
    # A caller may send anything as the method (a list, a dict): only a known name is shown.
    return method if isinstance(method, str) and method in METHODS.get(capability, {}) else UNKNOWN_METHOD


def mask_addresses(text: str | None, key: bytes | None = None) -> str | None:
    if not text or "@" not in text:
        return text
    return ADDRESS.sub(lambda m: hash_address(m.group(0), key), text)


def scrub(text: str | None, redact: object | None = None, key: bytes | None = None) -> str | None:
    """Secrets (with `redact`, a `actors.redaction.Redactor`), then addresses (hashed with `key`)."""
    if text is None:
        return None
    if redact is not None:
        text = redact(text)  # type: ignore[operator]
    return mask_addresses(text, key)


def hide_method(text: str, method: str) -> str:
    """`text` with a method name the capability does not have replaced by
    `unknown`, whole or as the router's error quotes it (cut short)."""
    from actors.payloads import shown

    text = text.replace(shown(method), repr(UNKNOWN_METHOD))
    return text.replace(method, UNKNOWN_METHOD) if isinstance(method, str) and method else text
