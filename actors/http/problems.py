"""Failures as RFC 9457 problem documents (`application/problem+json`).

One table maps each error kind to its HTTP status, as the contract fixes
it; a test walks ErrorKind so that no request-level kind goes unmapped.
A problem carries the gateway's `kind`, the `attempts` and the
`request_id` besides RFC 9457's `type`, `title`, `status` and `detail`;
429 and 503 carry `Retry-After`.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from actors.errors import ErrorKind
from actors.messages import InvokeResult

__all__ = ["HTTP_KINDS", "PROBLEM_TYPE", "STATUS_BY_KIND", "Problem", "for_result", "problem"]

PROBLEM_TYPE = "urn:aicmo-gateway:problem:"

# status, title
STATUS_BY_KIND: dict[str, tuple[int, str]] = {k.value: v for k, v in {
    ErrorKind.INVALID_REQUEST: (422, "The payload or an option is not valid"),
    ErrorKind.UNKNOWN_METHOD: (404, "No such capability or method"),
    ErrorKind.RATE_LIMITED: (429, "Throttled: every provider, or the router itself (overloaded)"),
    ErrorKind.NO_AVAILABLE_PROVIDER: (503, "No provider is available now"),
    ErrorKind.RETRY_BUDGET_EXHAUSTED: (503, "The retry budget is spent"),
    ErrorKind.GATEWAY_UNAVAILABLE: (503, "The capability's router could not be reached"),
    ErrorKind.ALL_PROVIDERS_FAILED: (502, "Every provider failed"),
    ErrorKind.OUTCOME_UNKNOWN: (502, "The outcome is unknown"),
    ErrorKind.DEADLINE_EXCEEDED: (504, "The deadline passed"),
    # The IETF Idempotency-Key draft: a key reused with another payload is 422.
    ErrorKind.IDEMPOTENCY_KEY_REUSED: (422, "The idempotency key was used for another request"),
    ErrorKind.STORE_UNAVAILABLE: (503, "The gateway's state store does not answer"),
    ErrorKind.SUPPRESSED: (422, "A recipient is on the suppression list"),
}.items()}

# Problems of the HTTP layer itself, before any router is asked.
HTTP_KINDS: dict[str, tuple[int, str]] = {
    "malformed_request": (400, "The request cannot be read"),
    "unauthorized": (401, "Missing or invalid API key"),
    "not_found": (404, "No such endpoint"),
    "method_not_allowed": (405, "Method not allowed"),
    "payload_too_large": (413, "The body is too large"),
    "internal_error": (500, "The gateway failed to answer"),
}

DEFAULT_RETRY_AFTER_S = 1.0


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem document with the gateway's members, every one always present (null when
    it does not apply), so clients can read them without checking."""

    type: str
    title: str
    status: int
    detail: str
    kind: str
    request_id: str | None = None
    attempts: list[dict[str, Any]] = []
    idempotency_key: str | None = None
    outbox_id: int | None = None
    retry_after_s: float | None = None
    instance: str | None = None


def _headers(status: int, retry_after_s: float | None) -> dict[str, str]:
    if status in (429, 503):
        return {"Retry-After": str(max(1, math.ceil(retry_after_s or DEFAULT_RETRY_AFTER_S)))}
    return {}


def problem(kind: str, detail: str, *, instance: str | None = None) -> tuple[int, Problem, dict[str, str]]:
    """A problem of the HTTP layer (HTTP_KINDS) or of a kind, with no result behind it."""
    status, title = HTTP_KINDS.get(kind) or STATUS_BY_KIND[kind]
    return status, Problem(type=PROBLEM_TYPE + kind, title=title, status=status, detail=detail, kind=kind,
                           instance=instance), _headers(status, None)


def for_result(result: InvokeResult, *, instance: str | None = None) -> tuple[int, Problem, dict[str, str]]:
    """The problem for a failed InvokeResult: its status, document and headers."""
    error = result.error
    kind = ErrorKind(error.kind).value if error is not None else ErrorKind.ALL_PROVIDERS_FAILED.value
    status, title = STATUS_BY_KIND.get(kind, (500, "The request failed"))
    retry_after_s = error.retry_after_s if error is not None else None
    doc = Problem(type=PROBLEM_TYPE + kind, title=title, status=status,
                  detail=error.message if error is not None else "the request failed", kind=kind,
                  request_id=result.request_id or None, attempts=[a.to_dict() for a in result.attempts],
                  idempotency_key=result.idempotency_key, outbox_id=result.outbox_id, retry_after_s=retry_after_s,
                  instance=instance)
    return status, doc, _headers(status, retry_after_s)
