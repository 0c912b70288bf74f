"""Spans to OTLP protobuf bytes (an ExportTraceServiceRequest,
opentelemetry/proto/trace/v1/trace.proto), written by hand.

Why not the exporter's own encoder: it builds a protobuf object per span,
per attribute and per value, and hashes the resource through JSON for every
span; in the router that was two thirds of what a traced request cost, in
the export thread but under the same GIL (bench/tracing.py's note). Here a
span is a few byte strings joined, and an attribute whose value repeats
(the capability, a provider's name, a flag) is encoded once and then found
in a bounded table. The result parses to the message the official encoder
makes (tests/unit/test_tracing.py checks it, field by field).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

__all__ = ["encode_request"]

_CACHED = 4096  # distinct (key, value) attributes kept encoded; past it, encoded each time
_cache: dict[tuple[str, Any, type, int], bytes] = {}  # (key, value, its type, field)
_fixed64 = struct.Struct("<Q").pack
_double = struct.Struct("<d").pack
_fixed32 = struct.Struct("<I").pack


_SMALL = [bytes((n,)) for n in range(128)]  # a varint below 128 is its one byte


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_TAGS = [_varint(number << 3 | 2) for number in range(16)]  # length-delimited fields 0..15


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    n = len(payload)
    return _TAGS[number] + (_SMALL[n] if n < 128 else _varint(n)) + payload


def _any_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, (list, tuple)):  # ArrayValue: repeated AnyValue values = 1
        return _field(5, b"".join(_field(1, _any_value(v)) for v in value))
    return _field(1, str(value).encode())


def _attributes(number: int, attributes: Any) -> bytes:
    """`attributes` as repeated KeyValue field `number`."""
    if not attributes:
        return b""
    out = []
    for key, value in attributes.items():
        cacheable = isinstance(value, (str, bool, int, float))
        ident = (key, value, type(value), number) if cacheable else None
        encoded = _cache.get(ident) if ident is not None else None
        if encoded is None:
            encoded = _field(number, _field(1, key.encode()) + _field(2, _any_value(value)))
            if ident is not None and len(_cache) < _CACHED and not (isinstance(value, str) and len(value) > 64):
                _cache[ident] = encoded
        out.append(encoded)
    return b"".join(out)


def _flags(tag: bytes, parent: Any) -> bytes:
    # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK (0x100), and IS_REMOTE (0x200) for a remote parent.
    return tag + _fixed32(0x300 if parent is not None and parent.is_remote else 0x100)


_SPAN_FLAGS = b"\x85\x01"  # Span.flags: field 16, fixed32
_LINK_FLAGS = b"\x35"       # Link.flags: field 6, fixed32


def _trace_state(state: Any) -> bytes:
    if not state:
        return b""
    return _field(3, ",".join(f"{k}={v}" for k, v in state.items()).encode())


def _span(span: Any) -> bytes:
    ctx = span.context
    parent = span.parent
    parts = [b"\x0a\x10", ctx.trace_id.to_bytes(16, "big"), b"\x12\x08", ctx.span_id.to_bytes(8, "big"),
             _trace_state(ctx.trace_state)]
    if parent is not None:
        parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
    parts += (_field(5, span.name.encode()), b"\x30", _varint(span.kind.value + 1),
              b"\x39", _fixed64(span.start_time or 0), b"\x41", _fixed64(span.end_time or 0),
              _attributes(9, span.attributes))
    for event in span.events:
        parts.append(_field(11, b"\x09" + _fixed64(event.timestamp) + _field(2, event.name.encode())
                            + _attributes(3, event.attributes)))
    for link in span.links:
        lc = link.context
        parts.append(_field(13, b"\x0a\x10" + lc.trace_id.to_bytes(16, "big") + b"\x12\x08"
                            + lc.span_id.to_bytes(8, "big") + _trace_state(lc.trace_state)
                            + _attributes(4, link.attributes) + _flags(_LINK_FLAGS, lc)))
    status = span.status
    code = status.status_code.value
    parts.append(_field(15, (_field(2, status.description.encode()) if status.description else b"")
                        + (b"\x18" + _varint(code) if code else b"")))
    parts.append(_flags(_SPAN_FLAGS, parent))
    return b"".join(parts)


def _scope(scope: Any) -> bytes:
    if scope is None:
        return b""
    body = _field(1, scope.name.encode()) if scope.name else b""
    if scope.version:
        body += _field(2, scope.version.encode())
    return _field(1, body)


def encode_request(spans: Sequence[Any]) -> bytes:
    """An ExportTraceServiceRequest of `spans` (the SDK's ReadableSpans),
    grouped by resource, then by instrumentation scope, as the exporter does."""
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope
        _, scopes = groups.setdefault(id(resource), (resource, {}))
        scopes.setdefault(id(scope), (scope, []))[1].append(_field(2, _span(span)))
    out = []
    for resource, scopes in groups.values():
        body = [_field(1, _attributes(1, resource.attributes))]
        for scope, encoded in scopes.values():
            scope_spans = [_scope(scope), *encoded]
            if scope is not None and scope.schema_url:
                scope_spans.append(_field(3, scope.schema_url.encode()))
            body.append(_field(2, b"".join(scope_spans)))
        if resource.schema_url:
            body.append(_field(3, resource.schema_url.encode()))
        out.append(_field(1, b"".join(body)))
    return b"".join(out)
