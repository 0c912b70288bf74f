"""`Gateway`: a driver's handle on a deployed gateway, in the style of Ray
Serve's DeploymentHandle.

    gw = Gateway.connect(namespace="aicmo")
    res = gw.invoke("email_sending", "send_email", payload, idempotency_key="lead-42-welcome")
    res.raise_for_error()

It finds each capability's router by name (actors.names), and makes a
router crash cost latency instead of an exception: a call the router
dropped (Ray raises ActorUnavailableError or RayActorError: it died or is
restarting) is sent again with the same idempotency key within the call's
deadline (actors/client/calls.py, resend.py). A send the caller gave no key gets one
made here, so the resend cannot deliver twice. When the router does not come
back in time the result is `gateway_unavailable`, with the key to retry with.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import ray

from actors.client.calls import PATIENCE_S, PING_S, ROUTER_GRACE_S, GaveUp, RouterCall, Steps, router_call, run, run_async
from actors.client.cluster import default_namespace, join
from actors.client.direct import DirectRoutes, direct_read, eligible
from actors.client.lookup import NameLookup
from actors.client.replicas import RouterReplicas
from actors.client.resend import ResendPolicy, client_key
from actors.errors import ErrorKind, NotDeployed
from actors.messages import Attempt, CapabilityStatus, ErrorInfo, InvokeResult, StatusReport
from actors.names import SUPERVISOR_NAME, router_capability, router_name
from actors.payloads import CAPABILITIES, METHODS, MethodSpec, Payload
from actors.policy.budget import RetryBudget
from actors.telemetry.context import current_traceparent

__all__ = ["ROUTER_GRACE_S", "Gateway"]

DEFAULT_RESEND = ResendPolicy()


def _unknown_capability(capability: str, method: str) -> InvokeResult:
    return InvokeResult(ok=False, capability=str(capability), method=str(method), request_id=uuid.uuid4().hex,
                        error=ErrorInfo(kind=ErrorKind.UNKNOWN_METHOD, message=(
                            f"there is no capability {str(capability)[:80]!r}; known: {', '.join(CAPABILITIES)}")))


class Gateway:
    """A handle on the gateway deployed in `namespace` of the Ray cluster
    this process is connected to. Safe to share between threads and tasks."""

    def __init__(self, namespace: str | None = None, *, resend: ResendPolicy = DEFAULT_RESEND,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], Any] = time.sleep,
                 async_sleep: Callable[[float], Any] = asyncio.sleep, ray_api: Any = ray, direct_reads: bool = False):
        self.namespace = namespace or default_namespace()
        self._ray = ray_api  # the seam tests use to stand in for Ray
        # Idempotent calls straight to the provider the router ranks first (actors/client/direct.py).
        self._direct = DirectRoutes(ray_api, self.namespace, clock) if direct_reads else None
        self.resend = resend
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._replicas: dict[str, RouterReplicas] = {}
        # Names are looked up within the call's deadline: the GCS may be down (the head's loss)
        self._lookup = NameLookup(ray_api, self.namespace)
        self.resent = 0  # calls (or batches) sent again after the router dropped them

    @classmethod
    def connect(cls, namespace: str | None = None, address: str | None = None, **options: Any) -> Gateway:
        """Join the Ray cluster at `address` (as ray.init: None reads
        RAY_ADDRESS, else finds the local one) unless this process already is
        a driver, and return a handle on the gateway in `namespace` (default
        $AICMO_NAMESPACE, else aicmo). Raises ClusterUnreachable."""
        namespace = namespace or default_namespace()
        join(address, namespace)
        return cls(namespace, **options)

    # --- finding actors ---------------------------------------------------------
    def _find(self, name: str, timeout_s: float | None) -> Any:
        """An actor by name, within `timeout_s` (ValueError: not registered; GcsUnavailable: no answer)."""
        try:
            return self._lookup.find(name, timeout_s)
        except NotDeployed:
            raise ValueError(name) from None

    def _router_replicas(self, capability: str) -> RouterReplicas:
        replicas = self._replicas.get(capability)
        if replicas is None:
            replicas = self._replicas[capability] = RouterReplicas(capability, self._find, self._clock)
        return replicas

    def _not_deployed(self, capability: str) -> NotDeployed:
        return NotDeployed(f"no actor {router_name(capability)!r} in namespace {self.namespace!r}: is the "
                           f"gateway deployed there, with capability {capability}? Deploy it with "
                           "`aicmo-gateway up --config <file>`")

    def _replica(self, capability: str, timeout_s: float | None = None) -> Any:
        """The replica of the capability's router that takes the next call (client/replicas.py).
        Handles once found are kept: calls through them need no GCS, so a connected client
        keeps being answered while the head is down. Raises NotDeployed, or GcsUnavailable
        when a lookup outlasts `timeout_s`."""
        try:
            return self._router_replicas(capability).pick(timeout_s)
        except (NotDeployed, ValueError):
            raise self._not_deployed(capability) from None

    def _router(self, capability: str, timeout_s: float | None = None) -> Any:
        return self._replica(capability, timeout_s).handle

    def router(self, capability: str) -> Any:
        """A handle on one of the capability's router replicas, the least busy
        of two (raises NotDeployed)."""
        return self._router(capability)

    def supervisor(self, timeout_s: float | None = None) -> Any:
        """The supervisor's handle (raises NotDeployed, or GcsUnavailable past `timeout_s`)."""
        try:
            return self._lookup.find(SUPERVISOR_NAME, timeout_s)
        except NotDeployed:
            raise NotDeployed(f"no actor {SUPERVISOR_NAME!r} in namespace {self.namespace!r}: is the gateway "
                              "deployed? Deploy it with `aicmo-gateway up --config <file>` (or pass --namespace)") from None

    def capabilities(self) -> list[str]:
        """The capabilities deployed in this namespace (one router each)."""
        names = (router_capability(e["name"]) for e in self._ray.util.list_named_actors(all_namespaces=True)
                 if e["namespace"] == self.namespace)
        return sorted(name for name in names if name is not None)

    # --- one call: its steps (actors/client/calls.py), run by a sync or an async shell -------
    def _run(self, steps: Steps[Any]) -> Any:
        return run(steps, lambda ref, timeout: self._ray.get(ref, timeout=timeout), self._sleep,
                   (ray.exceptions.GetTimeoutError,))

    def _to_router(self, call: RouterCall, send: Any) -> Steps[Any]:
        """`router_call` to the replica `_send_to` picks; a replica that dropped the call is
        left out for a while (client/replicas.py) and its drops are counted in `resent`."""
        return router_call(call, lambda c: send(c, self._sent_to(c)), self.resend, forget=self._dropped,
                           resent=lambda: self._count_resend(call), settled=self._settled, ping=self._ping,
                           spoke=self._spoke, spare=lambda: self._budget(call).balance(self._clock()) >= 1,
                           ping_wait=self._ping_wait, heard=self._heard)

    def _sent_to(self, call: RouterCall) -> Any:
        replica = self._replica(call.capability, call.remaining_s())
        now = self._clock()
        if not call.resends:
            self._budget(call).deposit(now)
        replica.in_flight += 1
        call.replica, call.sent_at = replica, now
        return replica.handle

    def _settled(self, call: RouterCall, answered: bool) -> None:
        if call.replica is not None:
            call.replica.in_flight -= 1
            if answered:
                call.replica.answered_at = self._clock()
                if call.sent_at is not None:
                    call.replica.answered(call.replica.answered_at - call.sent_at)

    def _dropped(self, call: RouterCall, keep_handle: bool) -> bool:
        if call.replica is None:
            return False
        replica, call.replica = call.replica, None
        return self._router_replicas(call.capability).dropped(replica, keep_handle)

    def _ping(self, call: RouterCall) -> Any:
        if call.replica is None:
            return None
        return self._router_replicas(call.capability).ping(call.replica)

    @staticmethod
    def _ping_wait(call: RouterCall) -> float:
        return PING_S if call.replica is None else call.replica.timeout_s(PING_S)

    def _heard(self, call: RouterCall) -> bool:
        return call.replica is not None and self._clock() - call.replica.answered_at < PATIENCE_S

    @staticmethod
    def _spoke(call: RouterCall) -> bool:
        return call.replica is not None and call.replica.answered_at > call.replica.pinged_at

    def _count_resend(self, call: RouterCall) -> None:
        self.resent += 1
        self._budget(call).withdraw(self._clock())

    def _budget(self, call: RouterCall) -> RetryBudget:
        return self._router_replicas(call.capability).budget

    def _invoke_steps(self, capability: str, method: str, payload: Any, idempotency_key: str | None,
                      dry_run: bool | None, deadline_s: float | None,
                      traceparent: str | None = None) -> Steps[InvokeResult]:
        """With direct_reads, an idempotent call first goes to the provider the
        router ranks first; to the router when that provider did not serve it."""
        if capability not in CAPABILITIES:
            return _unknown_capability(capability, method)
        tried: Attempt | None = None
        if self._direct is not None and eligible(capability, method):
            served, tried = yield from direct_read(self._direct, lambda: self._router(capability).ranking.remote(),
                                                   capability, method, payload, dry_run, deadline_s, traceparent)
            if served is not None:
                return served
            deadline_s = _left(deadline_s, tried)
        call = RouterCall(capability, method, client_key(capability, method, idempotency_key, dry_run), dry_run,
                          deadline_s, self._clock)

        # The trace context only when there is one: a router from before traces takes no such keyword.
        trace = {"traceparent": traceparent} if traceparent is not None else {}

        def send(c: RouterCall, router: Any) -> Any:
            return router.invoke.remote(method, payload, idempotency_key=c.key, dry_run=dry_run,
                                        deadline_s=c.router_deadline_s(), **trace)

        answer = yield from self._to_router(call, send)
        return _with_attempt(tried, call.unavailable(answer.why, self.namespace) if isinstance(answer, GaveUp)
                             else answer)

    def invoke(self, capability: str, method: str, payload: Any, *, idempotency_key: str | None = None,
               dry_run: bool | None = None, deadline_s: float | None = None,
               traceparent: str | None = None) -> InvokeResult:
        """One call through the capability's router: an InvokeResult, never an
        exception for a provider's failure or bad input (see raise_for_error).
        With direct_reads, an idempotent call goes to the provider the router
        ranks first, and to the router only if that provider did not serve it.
        `traceparent` (W3C): the parent of the request's trace; by default the
        caller's current OpenTelemetry span, if it has one (actors/telemetry)."""
        return self._run(self._invoke_steps(capability, method, payload, idempotency_key, dry_run, deadline_s,
                                            traceparent or current_traceparent()))

    async def invoke_async(self, capability: str, method: str, payload: Any, *, idempotency_key: str | None = None,
                           dry_run: bool | None = None, deadline_s: float | None = None,
                           traceparent: str | None = None) -> InvokeResult:
        """`invoke` for asyncio code: awaits the router without blocking the loop."""
        return await run_async(self._invoke_steps(capability, method, payload, idempotency_key, dry_run, deadline_s,
                                                  traceparent or current_traceparent()), self._async_sleep)

    # --- typed: the payload's class names the call --------------------------------
    def call(self, payload: Payload, **options: Any) -> InvokeResult:
        """`invoke` with a payload Struct of actors.payloads, whose class names
        the capability and method: `gw.call(SendEmail(to=[...], subject="Hi",
        text="Hello"), idempotency_key="k")`. Fields are checked as the
        Struct is built, so a typo fails in the caller, not at the router."""
        spec = _method_of_payload(payload)
        return self.invoke(spec.capability, spec.name, payload, **options)

    async def call_async(self, payload: Payload, **options: Any) -> InvokeResult:
        spec = _method_of_payload(payload)
        return await self.invoke_async(spec.capability, spec.name, payload, **options)

    # --- a batch ------------------------------------------------------------------
    def invoke_many(self, capability: str, requests: Sequence[Any]) -> list[InvokeResult]:
        """Many calls of one capability in one round trip: `requests` are
        `(method, payload, options)` (options as invoke's keywords); the
        results in the same order. A dropped batch is sent again whole,
        every send with its key. Each request's trace continues the caller's
        current OpenTelemetry span, as invoke's does, unless its options name
        a traceparent."""
        if capability not in CAPABILITIES:
            return [_unknown_capability(capability, _method_of(item)) for item in requests]
        batch, deadline_s = _keyed(capability, requests, current_traceparent())
        call = RouterCall(capability, "invoke_many", None, None, deadline_s, self._clock)
        answer = self._run(self._to_router(call, lambda c, router: router.invoke_many.remote(_with_deadline(batch, c))))
        return _unavailable_batch(batch, call, answer.why, self.namespace) if isinstance(answer, GaveUp) else answer

    # --- status -------------------------------------------------------------------
    def delivery(self, ident: str, timeout_s: float = 60.0) -> Any:
        """A request's timeline (actors/ops/trace.py: Trace): its attempts,
        skips, the provider that served it and the delivery events that
        followed, by idempotency key or request id; None when unknown."""
        return ray.get(self.supervisor(timeout_s).delivery_trace.remote(ident), timeout=timeout_s)

    def status(self, timeout_s: float = 60.0) -> StatusReport:
        """Every capability with its ranked providers and recent operations."""
        return self._ray.get(self.supervisor(timeout_s).status_report.remote(), timeout=timeout_s)

    async def status_async(self, timeout_s: float = 60.0) -> StatusReport:
        return await asyncio.wait_for(self.supervisor(timeout_s).status_report.remote(), timeout_s)

    def capability_status(self, capability: str, timeout_s: float = 30.0) -> CapabilityStatus:
        # Replica 0 (the contract's name) gathers every replica's status.
        try:
            first = self._find(router_name(capability), timeout_s)
        except ValueError:
            raise self._not_deployed(capability) from None
        return self._ray.get(first.status.remote(), timeout=timeout_s)

    async def unanswered_async(self, capabilities: Sequence[str], timeout_s: float = 2.0) -> dict[str, str]:
        """Which of these capabilities' routers do not answer now, and why (empty: all do)."""
        async def one(cap: str) -> str | None:
            try:
                await asyncio.wait_for(self._router(cap, timeout_s).digest.remote(), timeout_s)
                return None
            except NotDeployed:
                return "not deployed"
            except asyncio.TimeoutError:
                return f"no answer within {timeout_s:g}s"
            except Exception as exc:  # noqa: BLE001 - any failure is an answer for a health check
                self._replicas.pop(cap, None)
                return type(exc).__name__

        answers = await asyncio.gather(*(one(cap) for cap in capabilities))
        return {cap: why for cap, why in zip(capabilities, answers, strict=True) if why is not None}


_BY_PAYLOAD: dict[type, MethodSpec] = {spec.payload: spec for methods in METHODS.values() for spec in methods.values()}


def _method_of_payload(payload: Payload) -> MethodSpec:
    spec = _BY_PAYLOAD.get(type(payload))
    if spec is None:
        raise TypeError(f"call() takes a payload Struct of actors.payloads ({', '.join(sorted(t.__name__ for t in _BY_PAYLOAD))}), "
                        f"got {type(payload).__name__}")
    return spec


def _left(deadline_s: float | None, tried: Attempt | None) -> float | None:
    """What a failed direct attempt left of the caller's deadline."""
    if deadline_s is None or tried is None:
        return deadline_s
    return max(0.001, deadline_s - tried.latency_ms / 1000)


def _with_attempt(tried: Attempt | None, result: InvokeResult) -> InvokeResult:
    return result if tried is None else msgspec.structs.replace(result, attempts=[tried, *result.attempts])


def _method_of(item: Any) -> str:
    return str(item[0]) if isinstance(item, (tuple, list)) and item else "?"


def _keyed(capability: str, requests: Sequence[Any],
           traceparent: str | None = None) -> tuple[list[Any], float | None]:
    """The batch with a key added to every send that has none, and
    `traceparent` to every request that names none (only when there is one:
    a router from before traces takes no such keyword); and the longest
    deadline any request gave (None: none gave one). A malformed item is
    passed on as it is: the router answers it invalid_request."""
    batch: list[Any] = []
    deadlines: list[float] = []
    for item in requests:
        if not (isinstance(item, (tuple, list)) and len(item) in (2, 3)):
            batch.append(item)
            continue
        method, payload, *rest = item
        options = rest[0] if rest and rest[0] else {}
        if not isinstance(options, dict):
            batch.append(item)
            continue
        options = dict(options)
        key = client_key(capability, method, options.get("idempotency_key"), options.get("dry_run"))
        if key is not None:
            options["idempotency_key"] = key
        if traceparent is not None and options.get("traceparent") is None:
            options["traceparent"] = traceparent
        if isinstance(options.get("deadline_s"), (int, float)) and not isinstance(options["deadline_s"], bool):
            deadlines.append(float(options["deadline_s"]))
        batch.append((method, payload, options))
    return batch, (max(deadlines) if deadlines else None)


def _with_deadline(batch: list[Any], call: RouterCall) -> list[Any]:
    """On a resend, no request may be given more than what is left of the window."""
    if not call.resends:
        return batch
    left = max(0.001, call.remaining_s())
    out = []
    for item in batch:
        if isinstance(item, tuple) and len(item) == 3 and isinstance(item[2], dict):
            own = item[2].get("deadline_s")
            deadline = min(own, left) if isinstance(own, (int, float)) and not isinstance(own, bool) else left
            item = (item[0], item[1], {**item[2], "deadline_s": deadline})
        out.append(item)
    return out


def _unavailable_batch(batch: list[Any], call: RouterCall, why: str, namespace: str) -> list[InvokeResult]:
    out = []
    for item in batch:
        keyed = isinstance(item, tuple) and len(item) == 3 and isinstance(item[2], dict)
        one = RouterCall(call.capability, _method_of(item), item[2].get("idempotency_key") if keyed else None,
                    item[2].get("dry_run") if keyed else None, call.deadline_s, call.clock, started=call.started,
                    resends=call.resends)
        out.append(one.unavailable(why, namespace))
    return out
