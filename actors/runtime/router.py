"""The router actor: one per capability.

For each request: validate the payload, answer a repeated idempotency key
from the cache, plan the providers to try (policy.ranking), and try them in
order within the request's deadline, each attempt getting the time that
remains. Health comes back inside every reply, so ranking costs no extra
round trip. `invoke` never raises for a provider's failure or bad input.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import ray

from actors.errors import ErrorKind, ProviderError
from actors.messages import (
    Attempt,
    CallContext,
    CallReply,
    CapabilityStatus,
    ErrorInfo,
    InvokeResult,
    Operation,
    ProviderStatus,
)
from actors.payloads import METHODS, PayloadError, validate_payload
from actors.policy.health import HealthSnapshot
from actors.policy.ranking import Candidate, load_rank_policy, plan_attempts
from actors.runtime.idempotency import IdempotencyCache
from actors.runtime.specs import CapabilitySpec

# A provider actor enforces the attempt's timeout itself; the router waits a
# little longer before it decides the actor itself is stuck.
ACTOR_GRACE_S = 1.0
# Below this much time left, no attempt can finish: answer deadline_exceeded.
MIN_ATTEMPT_S = 0.005


class ActorUnreachable(Exception):
    """The provider actor (not the provider) could not be asked."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


Send = Callable[[str, str, Any, CallContext], Awaitable[CallReply]]


class _View(msgspec.Struct):
    """The router's picture of one provider: the health the provider last
    reported, plus what only the router can see (the actor's reachability)."""

    health: HealthSnapshot = HealthSnapshot()
    unreachable_until: float | None = None
    trial_in_flight: bool = False


class RouterCore:
    """Routing without Ray: `send` delivers one attempt to a provider."""

    def __init__(self, spec: CapabilitySpec, send: Send, clock: Callable[[], float] = time.time):
        self.spec = spec
        self.capability = spec.capability
        self.routing = spec.routing
        self._send = send
        self._clock = clock
        self._rank = load_rank_policy(spec.routing.ranking)
        self._order = {p.name: p.index for p in spec.providers}
        self.views: dict[str, _View] = {p.name: _View() for p in spec.providers}
        self.recent: deque[Operation] = deque(maxlen=spec.routing.recent_operations)
        self.idempotency = IdempotencyCache(spec.routing.idempotency_window_s, clock)

    # --- requests ------------------------------------------------------------
    async def invoke(self, method: str, payload: Any, idempotency_key: str | None = None,
                     dry_run: bool | None = None, deadline_s: float | None = None) -> InvokeResult:
        started = time.monotonic()
        request_id = uuid.uuid4().hex
        dry = self.spec.dry_run if dry_run is None else bool(dry_run)
        base = dict(request_id=request_id, idempotency_key=idempotency_key, dry_run=dry,
                    capability=self.capability, method=method)

        spec = METHODS[self.capability].get(method) if isinstance(method, str) else None
        if spec is None:
            known = ", ".join(METHODS[self.capability])
            return self._done(started, InvokeResult(ok=False, error=ErrorInfo(
                kind=ErrorKind.UNKNOWN_METHOD, message=f"{self.capability} has no method {method!r}; it has: {known}"), **base))
        try:
            payload = validate_payload(spec, payload)
            if idempotency_key is not None and not (isinstance(idempotency_key, str) and idempotency_key.strip()):
                raise PayloadError("idempotency_key must be a non-empty string")
            if deadline_s is not None and not (isinstance(deadline_s, (int, float)) and deadline_s > 0):
                raise PayloadError(f"deadline_s must be a positive number of seconds, got {deadline_s!r}")
        except PayloadError as exc:
            return self._done(started, InvokeResult(ok=False, error=ErrorInfo(kind=ErrorKind.INVALID_REQUEST, message=str(exc)), **base))

        if idempotency_key is not None and not dry:
            seen = self.idempotency.lookup(idempotency_key)
            if isinstance(seen, InvokeResult):
                return msgspec.structs.replace(seen, replayed=True)
            if seen is not None:  # the first request with this key is still running
                first = await asyncio.shield(seen)
                if first.ok:
                    return msgspec.structs.replace(first, replayed=True)
            self.idempotency.begin(idempotency_key)

        result = InvokeResult(ok=False, **base)
        try:
            result = await self._route(payload, deadline_s or self.routing.deadline_s, started, base)
        finally:
            if idempotency_key is not None and not dry:
                self.idempotency.finish(idempotency_key, result)
        return self._done(started, result)

    async def invoke_many(self, requests: list[Any]) -> list[InvokeResult]:
        async def one(item: Any) -> InvokeResult:
            try:
                method, payload, *rest = item
                options = rest[0] if rest and rest[0] else {}
                if not isinstance(options, dict):
                    raise TypeError("options must be a dict")
                return await self.invoke(method, payload, **options)
            except (TypeError, ValueError) as exc:
                return InvokeResult(ok=False, capability=self.capability, request_id=uuid.uuid4().hex, error=ErrorInfo(
                    kind=ErrorKind.INVALID_REQUEST,
                    message=f"each request is (method, payload, options): {exc}"))

        return list(await asyncio.gather(*(one(item) for item in requests)))

    async def _route(self, payload: Any, deadline_s: float, started: float, base: dict[str, Any]) -> InvokeResult:
        deadline = started + deadline_s
        plan = plan_attempts(self._candidates(), self._clock(), self._rank)
        attempts: list[Attempt] = []
        tried = 0
        for name in plan.order:
            if tried >= self.routing.max_attempts:
                break
            remaining = deadline - time.monotonic()
            if remaining < MIN_ATTEMPT_S:
                return InvokeResult(ok=False, attempts=attempts, error=ErrorInfo(
                    kind=ErrorKind.DEADLINE_EXCEEDED,
                    message=f"deadline of {deadline_s:g}s passed after {len(attempts)} attempt(s)"), **base)
            ctx = CallContext(request_id=base["request_id"], method=base["method"], idempotency_key=base["idempotency_key"],
                              dry_run=base["dry_run"], timeout_s=min(self.routing.attempt_timeout_s, remaining))
            reply = await self._attempt(name, payload, ctx, trial=(name == plan.trial))
            attempts.append(Attempt(provider=name, ok=reply.ok, error_kind=reply.error_kind, error=reply.error,
                                    latency_ms=round(reply.latency_ms, 3), trial=(name == plan.trial)))
            if reply.ok:
                return InvokeResult(ok=True, value=reply.value, provider=name, attempts=attempts, **base)
            if reply.error_kind is not ErrorKind.NOT_SUPPORTED:  # a skip is not a try
                tried += 1

        if not attempts or all(a.error_kind is ErrorKind.NOT_SUPPORTED for a in attempts):
            why = "; ".join(f"{s.name}: {s.reason}" for s in plan.skipped) or "no provider configured"
            if attempts:
                why = "; ".join(f"{a.provider}: {a.error}" for a in attempts)
            return InvokeResult(ok=False, attempts=attempts, error=ErrorInfo(
                kind=ErrorKind.NO_AVAILABLE_PROVIDER, message=f"no provider can serve this request now ({why})"), **base)
        last = attempts[-1]
        if time.monotonic() >= deadline - MIN_ATTEMPT_S and last.error_kind is ErrorKind.TIMEOUT:
            return InvokeResult(ok=False, attempts=attempts, error=ErrorInfo(
                kind=ErrorKind.DEADLINE_EXCEEDED,
                message=f"deadline of {deadline_s:g}s passed after {len(attempts)} attempt(s)"), **base)
        summary = "; ".join(f"{a.provider}: {a.error_kind}" for a in attempts)
        return InvokeResult(ok=False, attempts=attempts, error=ErrorInfo(
            kind=ErrorKind.ALL_PROVIDERS_FAILED,
            message=f"{len(attempts)} attempt(s) failed ({summary}); last error: {last.error}"), **base)

    async def _attempt(self, name: str, payload: Any, ctx: CallContext, trial: bool) -> CallReply:
        view = self.views[name]
        if trial:
            view.trial_in_flight = True
        started = time.monotonic()
        try:
            reply = await self._send(name, ctx.method, payload, ctx)
        except ActorUnreachable as exc:
            view.unreachable_until = self._clock() + self.routing.unreachable_backoff_s
            return CallReply(ok=False, error_kind=exc.kind, error=exc.message,
                             latency_ms=(time.monotonic() - started) * 1000, health=view.health)
        except ProviderError as exc:  # the router gave up waiting on the actor
            return CallReply(ok=False, error_kind=exc.kind, error=exc.message,
                             latency_ms=(time.monotonic() - started) * 1000, health=view.health)
        finally:
            if trial:
                view.trial_in_flight = False
        view.unreachable_until = None
        self._learn(view, reply.health)
        return reply

    # --- health --------------------------------------------------------------
    def _learn(self, view: _View, health: HealthSnapshot) -> None:
        # Replies can arrive out of order; keep the newest picture.
        if (health.last_checked or 0) >= (view.health.last_checked or 0):
            view.health = health

    def health_changed(self, name: str, health: HealthSnapshot) -> None:
        if name in self.views:
            self._learn(self.views[name], health)

    def _candidates(self) -> list[Candidate]:
        return [
            Candidate(name=name, index=self._order[name], health=v.health,
                      unreachable_until=v.unreachable_until, trial_in_flight=v.trial_in_flight)
            for name, v in self.views.items()
        ]

    def ranked(self, statuses: dict[str, ProviderStatus]) -> CapabilityStatus:
        plan = plan_attempts(self._candidates(), self._clock(), self._rank)
        order = [*plan.order, *(s.name for s in plan.skipped if s.name not in plan.order)]
        return CapabilityStatus(
            capability=self.capability,
            providers=[statuses[name] for name in order if name in statuses],
            recent_operations=list(self.recent),
            skipped={s.name: s.reason for s in plan.skipped},
        )

    # --- the recent-operations log -------------------------------------------
    def _done(self, started: float, result: InvokeResult) -> InvokeResult:
        elapsed = round((time.monotonic() - started) * 1000, 3)
        result = msgspec.structs.replace(result, elapsed_ms=elapsed)
        if self.recent.maxlen:
            self.recent.append(Operation(
                at=self._clock(), request_id=result.request_id, method=result.method, ok=result.ok,
                provider=result.provider, attempts=len(result.attempts),
                error_kind=result.error.kind if result.error else None,
                error=result.error.message[:300] if result.error else None,
                dry_run=result.dry_run, elapsed_ms=elapsed))
        return result


@ray.remote
class RouterActor:
    def __init__(self, spec: CapabilitySpec, namespace: str):
        self._namespace = namespace
        self._actor_names = {p.name: p.actor_name for p in spec.providers}
        self._handles: dict[str, Any] = {}
        self._core = RouterCore(spec, self._send)

    def _handle(self, name: str, refresh: bool = False) -> Any:
        if refresh or name not in self._handles:
            self._handles[name] = ray.get_actor(self._actor_names[name], namespace=self._namespace)
        return self._handles[name]

    async def _send(self, name: str, method: str, payload: Any, ctx: CallContext) -> CallReply:
        try:
            ref = self._handle(name).call.remote(method, payload, ctx)
        except ValueError as exc:  # no actor by that name (removed, or not yet created)
            raise ActorUnreachable(ErrorKind.UNAVAILABLE, f"{name}: provider actor not found: {exc}") from None
        try:
            return await asyncio.wait_for(ref, ctx.timeout_s + ACTOR_GRACE_S)
        except asyncio.TimeoutError:
            ray.cancel(ref)
            raise ActorUnreachable(ErrorKind.TIMEOUT, f"{name}: provider actor gave no answer within {ctx.timeout_s + ACTOR_GRACE_S:.2f}s") from None
        except ray.exceptions.ActorUnavailableError as exc:
            raise ActorUnreachable(ErrorKind.UNAVAILABLE, f"{name}: provider actor is restarting or unreachable: {type(exc).__name__}") from None
        except ray.exceptions.RayActorError as exc:
            self._handles.pop(name, None)  # it may come back under the same name
            raise ActorUnreachable(ErrorKind.CRASHED, f"{name}: provider actor died: {type(exc).__name__}") from None
        except ray.exceptions.RayTaskError as exc:
            raise ActorUnreachable(ErrorKind.CRASHED, f"{name}: provider actor failed: {exc.cause!r}") from None

    async def invoke(self, method: str, payload: Any, idempotency_key: str | None = None,
                     dry_run: bool | None = None, deadline_s: float | None = None) -> InvokeResult:
        return await self._core.invoke(method, payload, idempotency_key=idempotency_key, dry_run=dry_run, deadline_s=deadline_s)

    async def invoke_many(self, requests: list[Any]) -> list[InvokeResult]:
        return await self._core.invoke_many(requests)

    def health_changed(self, name: str, health: HealthSnapshot) -> None:
        self._core.health_changed(name, health)

    async def status(self, timeout_s: float = 5.0) -> CapabilityStatus:
        names = list(self._actor_names)

        async def one(name: str) -> ProviderStatus:
            spec = next(p for p in self._core.spec.providers if p.name == name)
            try:
                status = await asyncio.wait_for(self._handle(name).status.remote(), timeout_s)
                self._core.health_changed(name, self._health_of(status))
                return status
            except Exception as exc:  # noqa: BLE001 - a dead actor is a status, not an error
                self._handles.pop(name, None)
                view = self._core.views[name]
                return ProviderStatus.from_health(view.health, name=name, capability=spec.capability, adapter=spec.adapter,
                                                  reachable=False, delivers=spec.delivers,
                                                  warnings=[f"provider actor did not answer: {type(exc).__name__}"])

        statuses = await asyncio.gather(*(one(n) for n in names))
        return self._core.ranked({s.name: s for s in statuses})

    @staticmethod
    def _health_of(status: ProviderStatus) -> HealthSnapshot:
        return HealthSnapshot(
            state=status.health, consecutive_successes=status.consecutive_successes,
            consecutive_failures=status.consecutive_failures, latency_ms=status.latency_ms,
            latency_ewma_ms=status.latency_ewma_ms, total_calls=status.total_calls, total_failures=status.total_failures,
            last_error=status.last_error, last_error_kind=status.last_error_kind, last_checked=status.last_checked,
            cooldown_until=status.cooldown_until, throttled_until=status.throttled_until)

    def recent_operations(self) -> list[Operation]:
        return list(self._core.recent)

    def digest(self) -> str:
        return self._core.spec.digest

    def ready(self) -> str:
        return self._core.spec.actor_name
