"""A request's answer, built from what happened to it (core.py,
outbox_delivery.py): a success, a failure of a given kind, or, once every
provider of the plan was tried or passed over, the kind that says best why
(`exhausted`). No I/O and no clock: the caller says whether time ran out."""

from __future__ import annotations

from typing import Any

from actors.errors import ErrorKind
from actors.messages import ErrorInfo, InvokeResult
from actors.policy.retry_after import RetryHint
from actors.policy.skips import Skip, SkipReason
from actors.router.request import Request

__all__ = ["exhausted", "failed", "store_down", "succeeded"]


def succeeded(r: Request, name: str, value: Any, *, last_resort: bool = False, replayed: bool = False) -> InvokeResult:
    """`last_resort`: the outbox took it; its value names the outbox item."""
    outbox_id = value.get("outbox_id") if last_resort and isinstance(value, dict) else None
    return InvokeResult(ok=True, value=value, provider=name, attempts=r.attempts, replayed=replayed,
                        outbox_id=outbox_id, skips=r.skips(), **r.base)


def failed(r: Request, kind: ErrorKind, message: str, retry_after_s: float | None = None) -> InvokeResult:
    return InvokeResult(ok=False, attempts=r.attempts, error=ErrorInfo(
        kind=kind, message=message, retry_after_s=None if retry_after_s is None else round(retry_after_s, 3)),
        skips=r.skips(), **r.base)


def store_down(r: Request, exc: Exception) -> InvokeResult:
    return failed(r, ErrorKind.STORE_UNAVAILABLE,
                  f"{exc}. Nothing was sent: without the store no send can be kept to once. Retry with the "
                  "same idempotency key once it is back")


def exhausted(r: Request, skipped: dict[str, Skip], *, out_of_time: bool, budget_spent: bool,
              hint: RetryHint) -> InvokeResult:
    """Every provider of the plan was tried or passed over. `out_of_time`:
    the deadline has (all but) passed; `hint`: when a blocked provider frees up."""
    attempts = r.attempts
    real = [a for a in attempts if a.error_kind not in (ErrorKind.NOT_SUPPORTED, ErrorKind.CANCELLED)]
    if not real:
        why = "; ".join(f"{a.provider}: {a.error}" for a in attempts) or \
            "; ".join(f"{n}: {s.detail}" for n, s in skipped.items()) or "no provider configured"
        if out_of_time or any(s.reason is SkipReason.INFEASIBLE for s in skipped.values()):
            return failed(r, ErrorKind.DEADLINE_EXCEEDED, f"no attempt can finish within the deadline of {r.deadline_s:g}s ({why})")
        if hint.throttled:
            return failed(r, ErrorKind.RATE_LIMITED, f"every provider is throttled now ({why})", hint.after_s)
        return failed(r, ErrorKind.NO_AVAILABLE_PROVIDER, f"no provider can serve this request now ({why})", hint.after_s)
    last = real[-1]
    summary = "; ".join(f"{a.provider}: {a.error_kind}" for a in real)
    if out_of_time and last.error_kind is ErrorKind.TIMEOUT:
        return failed(r, ErrorKind.DEADLINE_EXCEEDED, f"deadline of {r.deadline_s:g}s passed after {len(real)} attempt(s) ({summary})")
    if budget_spent:
        return failed(r, ErrorKind.RETRY_BUDGET_EXHAUSTED,
                      f"{len(real)} attempt(s) failed ({summary}) and the retry budget allows no more fallbacks now; "
                      f"last error: {last.error}", hint.after_s)
    if hint.throttled and all(a.error_kind is ErrorKind.RATE_LIMITED for a in real):
        return failed(r, ErrorKind.RATE_LIMITED, f"every provider is throttled now ({summary}); last error: {last.error}",
                      hint.after_s)
    rounds = f" in {r.retry_rounds + 1} rounds" if r.retry_rounds else ""
    return failed(r, ErrorKind.ALL_PROVIDERS_FAILED,
                  f"{len(real)} attempt(s) failed{rounds} ({summary}); last error: {last.error}")
