"""Idempotent calls sent by the client straight to a provider actor, one
Ray hop instead of two, as Serve routes in the caller.

Only for methods that are safe to send twice (verify_email, enrich_person,
fetch_replies, upsert_contact), and only to the provider the router's
published ranking (RouterActor.ranking) puts first. The router stays the
authority on health: providers push their health to it, the client asks
for the ranking again after its `valid_for_s` and after any failure, and a
call the provider did not serve goes to the router as usual (fallback,
hedging, the retry budget), its failed direct attempt listed first in the
result. Such calls skip the router's recent-operations log, audit and
metrics: the providers' own health and metrics still count them. Traced
(actors/telemetry), the provider's span is the request's: a child of the
caller's span when there is one, else a trace's root; its ids come back in
the reply and so in the result.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from actors.client.calls import Await, Steps
from actors.errors import ErrorKind
from actors.messages import Attempt, CallContext, CallReply, InvokeResult, Ranking
from actors.payloads import METHODS, Payload, PayloadError, validate_payload

__all__ = ["RANKING_TIMEOUT_S", "DirectCall", "DirectRoutes", "direct_read", "eligible"]

# Asking a router for its ranking: a router that takes longer is left to serve the call itself.
RANKING_TIMEOUT_S = 2.0
# Beyond its timeout, how long the client waits for a provider actor's answer.
PROVIDER_GRACE_S = 1.0


def eligible(capability: str, method: Any) -> bool:
    spec = METHODS.get(capability, {}).get(method) if isinstance(method, str) else None
    return spec is not None and spec.idempotent


@dataclass
class DirectCall:
    """One call on its way to a provider actor."""

    capability: str
    method: str
    provider: str
    actor: str
    handle: Any
    payload: Payload
    ctx: CallContext
    started: float

    @property
    def wait_s(self) -> float:
        return self.ctx.timeout_s + PROVIDER_GRACE_S


class DirectRoutes:
    """The rankings a client holds, one per capability, and the provider
    actor handles they name."""

    def __init__(self, ray_api: Any, namespace: str, clock: Callable[[], float] = time.monotonic):
        self._ray = ray_api
        self._namespace = namespace
        self._clock = clock
        self._rankings: dict[str, tuple[Ranking, float]] = {}
        self._handles: dict[str, Any] = {}

    def fresh(self, capability: str) -> Ranking | None:
        held = self._rankings.get(capability)
        if held is None or self._clock() - held[1] > held[0].valid_for_s:
            return None
        return held[0]

    def store(self, ranking: Ranking) -> None:
        self._rankings[ranking.capability] = (ranking, self._clock())

    def forget(self, capability: str) -> None:
        self._rankings.pop(capability, None)

    def prepare(self, ranking: Ranking, method: str, payload: Any, dry_run: bool | None,
                deadline_s: float | None, traceparent: str | None = None) -> DirectCall | None:
        """The call to the ranking's first provider, or None: leave it to the
        router (no provider to send to, or a payload the router must refuse).
        `traceparent`: the caller's span, the parent of the provider's (actors/telemetry)."""
        if not ranking.providers:
            return None
        try:
            validated = validate_payload(METHODS[ranking.capability][method], payload)
        except PayloadError:
            return None  # the router answers invalid_request, with the same words as always
        name = ranking.providers[0]
        actor = ranking.actor_names.get(name)
        if actor is None:
            return None
        handle = self._handles.get(actor)
        if handle is None:
            try:
                handle = self._handles[actor] = self._ray.get_actor(actor, namespace=self._namespace)
            except ValueError:
                return None
        timeout_s = min(ranking.attempt_timeout_s.get(name, 10.0), deadline_s if deadline_s else math.inf)
        ctx = CallContext(request_id=uuid.uuid4().hex, method=method, timeout_s=timeout_s,
                          dry_run=ranking.dry_run if dry_run is None else bool(dry_run), traceparent=traceparent,
                          direct=True)
        return DirectCall(ranking.capability, method, name, actor, handle, validated, ctx, self._clock())

    def served(self, call: DirectCall, reply: CallReply) -> InvokeResult:
        return InvokeResult(
            ok=True, value=reply.value, provider=call.provider, request_id=call.ctx.request_id,
            attempts=[Attempt(provider=call.provider, ok=True, latency_ms=round(reply.latency_ms, 3))],
            dry_run=call.ctx.dry_run, capability=call.capability, method=call.method,
            elapsed_ms=round((self._clock() - call.started) * 1000, 3), trace_id=reply.trace_id, span_id=reply.span_id)

    def failed(self, call: DirectCall, reply: CallReply | None = None, exc: BaseException | None = None) -> Attempt:
        """The attempt the provider did not serve; the ranking is asked for again."""
        self.forget(call.capability)
        elapsed_ms = round((self._clock() - call.started) * 1000, 3)
        if reply is not None:
            return Attempt(provider=call.provider, ok=False, error_kind=reply.error_kind, error=reply.error,
                           latency_ms=elapsed_ms, maybe_delivered=reply.maybe_delivered)
        if isinstance(exc, (TimeoutError, ray.exceptions.GetTimeoutError)):
            kind, why = ErrorKind.TIMEOUT, f"no answer within {call.wait_s:.2f}s"
        elif isinstance(exc, ray.exceptions.ActorUnavailableError):
            kind, why = ErrorKind.UNAVAILABLE, "provider actor is restarting or unreachable"
        else:
            self._handles.pop(call.actor, None)  # a replaced actor is found again by name
            kind, why = ErrorKind.CRASHED, f"provider actor failed: {type(exc).__name__}"
        return Attempt(provider=call.provider, ok=False, error_kind=kind, error=f"{call.provider}: {why} (sent directly)",
                       latency_ms=elapsed_ms, maybe_delivered=True)


def direct_read(routes: DirectRoutes, ranking: Callable[[], Any], capability: str, method: str, payload: Any,
                dry_run: bool | None, deadline_s: float | None,
                traceparent: str | None = None) -> Steps[tuple[InvokeResult | None, Attempt | None]]:
    """The steps of a direct read (actors/client/calls.py): the ranking (held,
    or asked of the router with `ranking()`), then the call to its first
    provider. Returns (the result, None) when the provider served it; else
    (None, the failed attempt or None) and the router is to serve it."""
    held = routes.fresh(capability)
    if held is None:
        try:
            held = yield Await(lambda: (ranking(), RANKING_TIMEOUT_S))
        except Exception:  # noqa: BLE001 - no ranking (restarting, older router): the router serves it
            return None, None
        routes.store(held)
    call = routes.prepare(held, method, payload, dry_run, deadline_s, traceparent)
    if call is None:
        return None, None
    try:
        reply = yield Await(lambda: (call.handle.call.remote(method, call.payload, call.ctx), call.wait_s))
    except Exception as exc:  # noqa: BLE001 - any failure goes to the router, listed first
        return None, routes.failed(call, exc=exc)
    return (routes.served(call, reply), None) if reply.ok else (None, routes.failed(call, reply))
