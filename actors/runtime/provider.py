"""The provider actor: one adapter, its health, its concurrency limit.

It is the single owner and writer of its provider's health: every attempt
and every probe becomes an `Outcome` folded in by `policy.health.observe`.
Each reply carries the health after the attempt, so routers learn it without
another round trip; changes of state are also pushed to the router and the
supervisor, off the request's path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray

from actors.adapters.base import Adapter
from actors.adapters.registry import get_adapter_class
from actors.errors import ErrorKind, ProviderError
from actors.messages import CallContext, CallReply, ProbeResult, ProviderStatus
from actors.payloads import Payload
from actors.policy.health import HealthChanged, HealthSnapshot, Outcome, observe
from actors.redaction import Redactor
from actors.runtime.specs import SUPERVISOR_NAME, ProviderSpec, router_name

log = logging.getLogger("aicmo.provider")


def classify(exc: BaseException) -> tuple[ErrorKind, str, float | None]:
    """Sort an exception raised by an attempt into our closed set of kinds."""
    if isinstance(exc, ProviderError):
        return exc.kind, exc.message, exc.retry_after_s
    if isinstance(exc, asyncio.TimeoutError):
        return ErrorKind.TIMEOUT, "no answer within the attempt's time", None
    return ErrorKind.CRASHED, f"adapter raised {type(exc).__name__}: {exc}", None


class ProviderCore:
    """The actor's logic without Ray, so it can be unit-tested with a fake adapter."""

    def __init__(self, spec: ProviderSpec, adapter: Adapter | None = None, clock: Any = time.time):
        self.spec = spec
        if adapter is None:
            adapter_cls = get_adapter_class(spec.adapter)
            adapter = adapter_cls(adapter_cls.Settings.model_validate(spec.settings), capability=spec.capability, provider=spec.name)
        self.adapter = adapter
        self.redact = Redactor([*adapter.settings.secret_values(), *spec.env_secrets])
        self.policy = spec.health_policy()
        self.health = HealthSnapshot()
        self.in_flight = 0
        self._clock = clock
        self._limit: asyncio.Semaphore | None = None
        self.on_change: Any = None  # called with the new status when the state changes

    async def call(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        if self._limit is None:
            self._limit = asyncio.Semaphore(self.spec.max_concurrency)
        started = time.monotonic()
        self.in_flight += 1
        try:
            # Waiting for a free slot counts against the attempt's time: the
            # router budgeted this much for the whole attempt.
            value = await asyncio.wait_for(self._limited(method, payload, ctx), ctx.timeout_s)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a kind
            kind, message, retry_after = classify(exc)
            latency = (time.monotonic() - started) * 1000
            message = self.redact(f"{self.spec.name}: {message}" if not message.startswith(self.spec.name) else message)
            if not ctx.dry_run:
                self.record(Outcome(at=self._clock(), ok=False, latency_ms=latency, error_kind=kind, error=message, retry_after_s=retry_after))
            return CallReply(ok=False, error_kind=kind, error=message, latency_ms=latency, retry_after_s=retry_after, health=self.health)
        finally:
            self.in_flight -= 1
        latency = (time.monotonic() - started) * 1000
        if not ctx.dry_run:  # a dry run says nothing about the provider's health
            self.record(Outcome(at=self._clock(), ok=True, latency_ms=latency))
        return CallReply(ok=True, value=value, latency_ms=latency, health=self.health)

    async def _limited(self, method: str, payload: Payload, ctx: CallContext) -> Any:
        assert self._limit is not None
        async with self._limit:
            return await self.adapter.call(method, payload, ctx)

    async def probe(self, timeout_s: float = 5.0) -> ProbeResult:
        started = time.monotonic()
        try:
            await asyncio.wait_for(self.adapter.probe(), timeout_s)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001
            kind, message, retry_after = classify(exc)
            latency = (time.monotonic() - started) * 1000
            message = self.redact(message)
            if self.adapter.has_probe:
                self.record(Outcome(at=self._clock(), ok=False, latency_ms=latency, error_kind=kind, error=message, retry_after_s=retry_after))
            return ProbeResult(provider=self.spec.name, capability=self.spec.capability, ok=False, error_kind=kind,
                               error=message, latency_ms=latency, delivers=self.adapter.delivers)
        latency = (time.monotonic() - started) * 1000
        if self.adapter.has_probe:
            # A passing probe counts as a success, so a provider that cooled
            # down can come back without risking a real request.
            self.record(Outcome(at=self._clock(), ok=True, latency_ms=latency))
        return ProbeResult(provider=self.spec.name, capability=self.spec.capability, ok=True, latency_ms=latency,
                           delivers=self.adapter.delivers)

    def record(self, outcome: Outcome) -> None:
        self.health, events = observe(self.health, outcome, self.policy)
        for event in events:
            if isinstance(event, HealthChanged):
                log.warning("%s: health %s -> %s (%s)", self.spec.actor_name, event.old, event.new, event.reason)
                if self.on_change is not None:
                    self.on_change(self.status())

    def status(self) -> ProviderStatus:
        return ProviderStatus.from_health(
            self.health,
            name=self.spec.name,
            capability=self.spec.capability,
            adapter=self.spec.adapter,
            in_flight=self.in_flight,
            max_concurrency=self.spec.max_concurrency,
            delivers=self.adapter.delivers,
            warnings=self.adapter.warnings(),
        )


@ray.remote
class ProviderActor:
    def __init__(self, spec: ProviderSpec, namespace: str):
        self._core = ProviderCore(spec)
        self._core.on_change = self._push_change
        self._namespace = namespace

    def _push_change(self, status: ProviderStatus) -> None:
        # Fire and forget: a slow or restarting supervisor must never hold up a request.
        for name in (SUPERVISOR_NAME, router_name(status.capability)):
            try:
                handle = ray.get_actor(name, namespace=self._namespace)
                if name == SUPERVISOR_NAME:
                    handle.report.remote(status)
                else:
                    handle.health_changed.remote(status.name, self._core.health)
            except Exception:  # noqa: BLE001 - not deployed yet, or gone
                pass

    async def call(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        return await self._core.call(method, payload, ctx)

    async def probe(self, timeout_s: float = 5.0) -> ProbeResult:
        return await self._core.probe(timeout_s)

    def status(self) -> ProviderStatus:
        return self._core.status()

    def health(self) -> HealthSnapshot:
        return self._core.health

    def digest(self) -> str:
        return self._core.spec.digest

    def ready(self) -> str:
        return self._core.spec.actor_name

    def inject_fault(self, **changes: Any) -> dict[str, Any]:
        """Change a simulated provider's behaviour at run time (demo and fault tests)."""
        reconfigure = getattr(self._core.adapter, "reconfigure", None)
        if reconfigure is None:
            raise TypeError(f"{self._core.spec.adapter} adapter takes no injected faults; only `simulated` does")
        return reconfigure(**changes).model_dump()
