"""The W3C `traceparent` (https://www.w3.org/TR/trace-context/#traceparent-header)
as our messages carry it: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
Pure code: no SDK import, so the client pays nothing when nobody traces."""

from __future__ import annotations

import re
import sys
from typing import NamedTuple

__all__ = ["ParentContext", "current_traceparent", "format_traceparent", "parse_traceparent"]

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


class ParentContext(NamedTuple):
    trace_id: str   # 32 hex characters
    span_id: str    # 16 hex characters
    sampled: bool


def parse_traceparent(value: str | None) -> ParentContext | None:
    """The parent a `traceparent` names; None for no value or one the
    specification says to ignore (malformed, version ff, all-zero ids): the
    request then starts a trace of its own."""
    if not value or not isinstance(value, str):
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return ParentContext(trace_id, span_id, bool(int(flags, 16) & 1))


def format_traceparent(trace_id: str, span_id: str, sampled: bool = True) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def current_traceparent() -> str | None:
    """The caller's current span as a traceparent, when the caller traces
    with OpenTelemetry (the router's request span becomes its child); None
    otherwise. A program that never imported OpenTelemetry has no current
    span: nothing is imported here for it."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format_traceparent(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", bool(ctx.trace_flags & 1))
