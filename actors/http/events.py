"""POST /v1/events/{capability}/{provider}: the providers' signed delivery
events (actors/events), and GET /v1/requests/{id}: a request's timeline.

No API key on the events endpoint: the provider's signature is the
authentication. A request that is not the provider's (no signature, a
wrong one, a stale one, a replay) is a 401 problem document and nothing of
it is kept; a body over the cap is a 413. A genuine one is answered 200
once its events are stored, those of messages we do not know included
(kept and counted): an error would only make the provider post it again,
and again. The store failing is a 503 with Retry-After, which the
providers honour by retrying.

Kept apart from app.py so the routes there stay a list of one line each.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from actors.clock import SYSTEM_CLOCK, Clock
from actors.durable.store import Suppression
from actors.errors import StoreUnavailable
from actors.events.guard import MAX_EVENT_BODY_BYTES, ReplayGuard
from actors.events.intake import EventIntake
from actors.events.model import DeliveryEvent, SignatureRefused
from actors.ops.trace import load_trace
from actors.http.problems import problem
from actors.policy.suppression import to_suppress

__all__ = ["EventsEndpoint", "EventSource", "StoredListener"]

log = logging.getLogger("aicmo.http.events")
_encode = msgspec.json.Encoder().encode

# Called once events are stored (health from outcomes, suppressions): (capability, provider, new events).
StoredListener = Callable[[str, str, Sequence[DeliveryEvent]], Awaitable[None]]


class EventSource(msgspec.Struct, frozen=True, kw_only=True):
    capability: str
    provider: str
    adapter: str
    verification_key: str
    suppress: bool = True            # a hard bounce puts the address on the suppression list


class EventsEndpoint:
    def __init__(self, sources: Sequence[EventSource], store: Any, *, capabilities: Sequence[str],
                 clock: Clock = SYSTEM_CLOCK,
                 on_stored: StoredListener | None = None):
        # One replay memory per provider: tokens are the provider's.
        self._intakes = {(s.capability, s.provider): EventIntake(s.adapter, s.verification_key, ReplayGuard())
                         for s in sources}
        self._suppress = {(s.capability, s.provider) for s in sources if s.suppress}
        self._store = store
        self._capabilities = list(capabilities)
        self._clock = clock
        self._on_stored = on_stored
        self.received = 0          # events stored, duplicates aside (this replica)

    async def ingest(self, request: Request) -> Response:
        capability, provider = request.path_params["capability"], request.path_params["provider"]
        where = request.url.path
        intake = self._intakes.get((capability, provider))
        if intake is None:
            return self._problem("not_found", f"no provider {provider[:80]!r} of {capability[:80]!r} takes delivery "
                                 "events here (its config needs events.verification_key)", where)
        body = await _read_capped(request)
        if body is None:
            return self._problem("payload_too_large", f"the body is over {MAX_EVENT_BODY_BYTES} bytes", where)
        try:
            events = intake.accept(body, {k.lower(): v for k, v in request.headers.items()}, self._clock.time())
        except SignatureRefused as refused:
            if refused.reason == "too_large":
                return self._problem("payload_too_large", refused.message, where)
            return self._problem("unauthorized", f"{refused.message} ({refused.reason})", where)
        try:
            now = self._clock.time()
            added = await self._store.events_put(capability, provider, events, now)
            if (capability, provider) in self._suppress:
                # Idempotent: an address already listed keeps its first record.
                await self._store.suppress_add([
                    Suppression(capability=capability, address=address, reason=reason, added_at=now,
                                provider=provider, request_id=e.request_id)
                    for address, reason, e in to_suppress(events)])
        except StoreUnavailable as exc:
            return self._problem("store_unavailable", f"the events were not stored: {exc}", where)
        self.received += added
        if added < len(events):
            log.debug("%d of %d %s/%s events were stored already", len(events) - added, len(events), capability,
                      provider)
        if added and self._on_stored is not None:
            try:
                await self._on_stored(capability, provider, events)
            except Exception as exc:  # noqa: BLE001 - stored is stored: the provider must not post it again
                log.warning("after storing %d %s/%s events: %s: %s", added, capability, provider,
                            type(exc).__name__, str(exc)[:300])
        return Response(_encode({"received": len(events), "stored": added}), media_type="application/json")

    async def request(self, request: Request, keys: Sequence[str]) -> Response:
        ident = request.path_params["id"]
        try:
            trace = await load_trace(self._store, self._capabilities, ident, keys)
        except StoreUnavailable as exc:
            return self._problem("store_unavailable", str(exc), request.url.path)
        if trace is None:
            return self._problem("not_found", f"no request or idempotency key {ident[:120]!r} is known",
                                 request.url.path)
        return Response(_encode(trace), media_type="application/json")


    def _problem(self, kind: str, detail: str, where: str) -> Response:
        status, doc, headers = problem(kind, detail, instance=where)
        return Response(_encode(doc), status_code=status, headers=headers, media_type="application/problem+json")


async def _read_capped(request: Request) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_EVENT_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_EVENT_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
