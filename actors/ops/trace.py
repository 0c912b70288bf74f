"""One request's timeline: its attempts, skips and the provider that
served it (the result its idempotency key keeps), then the delivery events
that followed (actors/events/timeline.py), in order. Found by idempotency
key or by request id; the store is passed in.

A request's result is kept only when it was served (or queued): a failed
one without a key has no attempts here, only its delivery events, if any."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from actors.events.matching import refs_for
from actors.events.timeline import fold
from actors.messages import Attempt, InvokeResult, SkipInfo

__all__ = ["Trace", "TraceEvent", "load_trace"]

_decode_result = msgspec.msgpack.Decoder(InvokeResult).decode


class TraceEvent(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    kind: str                         # the provider's name for it
    state: str | None
    occurred_at: float
    received_at: float
    recipient: str | None = None
    bounce: str | None = None
    cause: str | None = None
    reason: str | None = None


class Trace(msgspec.Struct, frozen=True, kw_only=True):
    id: str                           # what was asked for
    capability: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None
    ok: bool | None = None            # the request's result, when its key kept one
    provider: str | None = None       # the provider that served it
    attempts: list[Attempt] = []
    skips: list[SkipInfo] = []
    delivery_state: str | None = None  # overall (actors/events/timeline.py)
    recipients: dict[str, str] = {}
    events: list[TraceEvent] = []


async def load_trace(store: Any, capabilities: Sequence[str], ident: str,
                     keys: Sequence[str] | None = None) -> Trace | None:
    """`ident` as an idempotency key (as `keys` say: the HTTP API's keys are
    scoped by their caller, and a caller reads only its own), else as a
    request id (a send without a key keeps its result under `auto-<request
    id>`: actors/router/core.py). None when nothing is known of it."""
    result: InvokeResult | None = None
    capability, key = None, None
    for cap in capabilities:
        records = await store.get_keys(cap, [*(keys if keys is not None else [ident]), f"auto-{ident}"])
        for record in records.values():
            if record.result is not None:
                result, capability = _decode_result(record.result), cap
                key = record.key
                break
        if result is not None:
            break
    if result is not None:
        refs = refs_for(result.request_id or None, key)
    else:
        refs = refs_for(ident)
    stored = await store.events_find(refs)
    if result is None and not stored:
        return None
    by_id = {(s.event.provider_kind, s.event.event_id): s for s in stored}
    view = fold(s.event for s in stored)
    events = [TraceEvent(provider=by_id[(e.provider_kind, e.event_id)].provider, kind=e.kind, state=e.state,
                         occurred_at=e.occurred_at, received_at=by_id[(e.provider_kind, e.event_id)].received_at,
                         recipient=e.recipient, bounce=e.bounce, cause=e.cause, reason=e.reason)
              for e in view.events]
    if result is None:
        first = stored[0]
        return Trace(id=ident, capability=first.capability, request_id=ident if any(
            s.event.request_id == ident for s in stored) else first.event.request_id,
            delivery_state=view.state, recipients=view.recipients, events=events)
    return Trace(id=ident, capability=capability, request_id=result.request_id, idempotency_key=result.idempotency_key,
                 ok=result.ok, provider=result.provider, attempts=list(result.attempts), skips=list(result.skips),
                 delivery_state=view.state, recipients=view.recipients, events=events)
