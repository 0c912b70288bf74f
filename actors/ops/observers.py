"""What the router and provider actors hook up: audit log, metrics, hooks.

`RouterOps.observe` is registered in `RouterCore.observers` and is called
with every finished request's `Decision`, on the request's path: it only
appends to buffers and queues. `ProviderOps` does the same for a provider
actor's calls and health changes: it is one of the listeners the provider
core is built with (actors/provider/listener.py names the events). Each
starts one background task, on the actor's event loop, on first use, that
writes the audit lines (in a thread), records the buffered metrics, and
keeps the gauges current, pausing on the actor's clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from actors.clock import SYSTEM_CLOCK, Clock
from actors.messages import CallReply, Decision, ProviderStatus
from actors.ops.audit import AuditLog, audit_dir, delivery_health_record, outlier_record
from actors.ops.chaos_audit import ChaosAudit
from actors.ops.hooks import HealthChange, HookRunner
from actors.ops.metrics import (
    HEALTH_CODE,
    Buffered,
    HeldGauges,
    RayRecorder,
    Recorder,
    RouterMetrics,
    outcome_of,
)
from actors.policy.health import Health
from actors.policy.outliers.detection import Ejected, OutlierEvent
from actors.redaction import Redactor
from actors.specs import CapabilitySpec, ProviderSpec

__all__ = ["ProviderOps", "RouterOps"]

log = logging.getLogger("aicmo.ops")


def _secrets(providers: list[ProviderSpec]) -> list[str]:
    return [s for p in providers for s in p.secret_values()]


class _Background:
    """One periodic task on the running loop, started on first use."""

    interval_s: float = 1.0

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def ensure_started(self) -> None:
        if self._task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self.clock.sleep(self.interval_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round
                log.exception("%s: background round failed", type(self).__name__)

    async def tick(self) -> None:
        raise NotImplementedError


class RouterOps(_Background):
    def __init__(self, spec: CapabilitySpec, recorder: Recorder | None = None,
                 hook_loader: Callable[[str], Any] | None = None, audit_key: bytes | None = None,
                 clock: Clock = SYSTEM_CLOCK, replica: int = 0):
        """`audit_key`: the deployment's secret the audit log hashes keys and
        addresses with (HMAC-SHA256); None falls back to unkeyed hashes.
        `replica`: which of the capability's router replicas this is (each
        writes a file of its own; replica 0 the capability's)."""
        super().__init__(clock)
        self.spec = spec
        self.metrics: RouterMetrics | None = None
        if spec.metrics.enabled or recorder is not None:
            self.metrics = RouterMetrics(recorder or RayRecorder(spec.metrics.latency_buckets_ms), spec.capability,
                                         replica)
        directory = audit_dir(spec.state.url, spec.state.namespace) if spec.audit.enabled else None
        self.audit: AuditLog | None = None
        if directory is not None:
            self.audit = AuditLog(directory, spec.capability, max_bytes=spec.audit.max_bytes, backups=spec.audit.backups,
                                  redact=Redactor(_secrets(spec.providers)), key=audit_key, replica=replica)
        h = spec.hooks
        kw: dict[str, Any] = {"loader": hook_loader} if hook_loader else {}
        self.hooks = HookRunner({"on_success": h.on_success, "on_failure": h.on_failure}, owner=spec.actor_name,
                                timeout_s=h.timeout_s, queue_size=h.queue_size, on_result=self._hook_result, **kw)
        self.interval_s = min(spec.audit.flush_interval_s if self.audit else 60.0,
                              spec.metrics.flush_interval_s if self.metrics else 60.0)
        self._write_lock: asyncio.Lock | None = None
        self.chaos = ChaosAudit(self.audit)  # live faults: injected, cleared, expired (chaos_audit.py)
        self.gauges = HeldGauges(self.metrics.recorder) if self.metrics is not None else None
        # Lines are hashed as they are written, under the deployment's key in the store: the router
        # sets this to load it before the first write, so an idle router never opens the store.
        self.audit_key_loader: Callable[[], Awaitable[None]] | None = None

    def outliers(self, events: list[OutlierEvent], ejected: dict[str, bool], panic: bool) -> None:
        """After each outlier sweep: its events to the audit log and the metrics, the gauges set."""
        self.ensure_started()
        cap = self.spec.capability
        for e in events:
            if self.audit is not None:
                self.audit.observe(outlier_record(e, cap))
            if self.metrics is not None and isinstance(e, Ejected):
                self.metrics.count("aicmo_outlier_ejections", cap, e.name, str(e.reason))
        if self.gauges is not None:
            for name, on in ejected.items():
                self.gauges.set("aicmo_outlier_ejected", float(on), {"capability": cap, "provider": name})
            self.gauges.set("aicmo_outlier_panic", float(panic), {"capability": cap})

    def delivery_health(self, transitions: list[Any]) -> None:
        """Verdicts from delivery outcomes that changed (router/delivery_health.py), to the audit log."""
        self.ensure_started()
        for t in transitions:
            if self.audit is not None:
                self.audit.observe(delivery_health_record(t, self.spec.capability))

    def _hook_result(self, event: str, path: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.count("aicmo_hook_calls", event, path, outcome)

    def observe(self, decision: Decision) -> None:
        """A RouterCore observer: enqueue only."""
        self.ensure_started()
        if self.audit is not None:
            self.audit.observe(decision)
        if self.metrics is not None:
            self.metrics.observe_decision(decision)
        self.hooks.submit("on_success" if decision.ok else "on_failure", decision)

    async def tick(self) -> None:
        self.chaos.sweep(self.clock.time())
        if self.metrics is not None:
            self.metrics.flush()
        if self.gauges is not None:
            self.gauges.refresh()
        await self.flush_audit()

    async def flush_audit(self) -> None:
        """Write what is buffered, in a thread; one write at a time, in order."""
        if self.audit is None:
            return
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        async with self._write_lock:
            batch = self.audit.take()
            if batch:
                if self.audit.key is None and self.audit_key_loader is not None:
                    await self.audit_key_loader()
                    if self.audit.key is None:
                        # Never unkeyed hashes: keys and addresses are guessable, and a
                        # dictionary reverses plain SHA-256. The lines wait, in the
                        # bounded buffer, for the store to give the key.
                        self.audit.hold(batch)
                        return
                await asyncio.to_thread(self.audit.write, batch)

    def report(self) -> dict[str, Any]:
        return {"hooks": self.hooks.report(), "audit": self.audit.status() if self.audit else None}


class ProviderOps(_Background):
    """A provider actor's latency histogram, health gauges, spend and chaos
    counters, and health hooks: a ProviderListener (actors/provider/listener.py)."""

    interval_s = 1.0

    def __init__(self, spec: ProviderSpec, status: Callable[[], ProviderStatus], recorder: Recorder | None = None,
                 hook_loader: Callable[[str], Any] | None = None, clock: Clock = SYSTEM_CLOCK):
        super().__init__(clock)
        self.spec = spec
        self._status = status
        self.buffer: Buffered | None = None
        if spec.metrics.enabled or recorder is not None:
            self.buffer = Buffered(recorder or RayRecorder(spec.metrics.latency_buckets_ms))
            self.interval_s = spec.metrics.flush_interval_s
        kw: dict[str, Any] = {"loader": hook_loader} if hook_loader else {}
        self.hooks = HookRunner({"on_health_change": spec.hooks.on_health_change}, owner=spec.actor_name,
                                timeout_s=spec.hooks.timeout_s, queue_size=spec.hooks.queue_size,
                                on_result=self._hook_result, **kw)
        self._last_health = Health.UNKNOWN
        self._tags = {"capability": spec.capability, "provider": spec.name}

    def delivery_health(self, transitions: list[Any]) -> None:
        """Verdicts from delivery outcomes that changed (router/delivery_health.py), to the audit log."""
        self.ensure_started()
        for t in transitions:
            if self.audit is not None:
                self.audit.observe(delivery_health_record(t, self.spec.capability))

    def _hook_result(self, event: str, path: str, outcome: str) -> None:
        if self.buffer is not None:
            self.buffer.count("aicmo_hook_calls", event, path, outcome)

    def on_reply(self, reply: CallReply, dry_run: bool) -> None:
        self.ensure_started()
        if self.buffer is not None and not dry_run and not reply.replayed:
            self.buffer.observe("aicmo_provider_latency_ms", reply.latency_ms, self.spec.capability, self.spec.name,
                                outcome_of(reply.ok, reply.error_kind))

    def on_spend(self, amount: float) -> None:
        """A charged call's price (actors/provider/spending.py), in the provider's currency."""
        if self.buffer is not None and self.spec.price is not None:
            self.buffer.count("aicmo_provider_spend", self.spec.capability, self.spec.name, self.spec.price.currency,
                              value=amount)

    def on_health_changed(self, status: ProviderStatus) -> None:
        """On every change of the provider's stored health state."""
        self.ensure_started()
        old, self._last_health = self._last_health, status.health
        self._set_gauges(status)
        self.hooks.submit("on_health_change", HealthChange(at=self.clock.time(), capability=status.capability,
                                                           provider=status.name, old=old, new=status.health,
                                                           status=status))

    def _set_gauges(self, status: ProviderStatus) -> None:
        if self.buffer is None:
            return
        rec = self.buffer.recorder
        rec.set("aicmo_provider_health", HEALTH_CODE.get(str(status.health), 0), self._tags)
        rec.set("aicmo_provider_in_flight", status.in_flight, self._tags)
        if status.quota_left is not None:
            rec.set("aicmo_provider_quota_left", status.quota_left, self._tags)
        rec.set("aicmo_chaos_fault_active", 1 if status.fault is not None else 0, self._tags)

    def on_quota_flip(self, status: ProviderStatus) -> None:
        pass  # the quota gauge follows on the next round (tick)

    def on_fault_applied(self, action: str) -> None:
        """A live fault acted on an attempt (actors/provider/faults.py): `delay` or `fail`."""
        if self.buffer is not None:
            self.buffer.count("aicmo_chaos_applied", self.spec.capability, self.spec.name, action)

    async def tick(self) -> None:
        if self.buffer is None:
            return
        self.buffer.flush()
        self._set_gauges(self._status())  # shown state: a throttle starts and ends without a change of state

    def report(self) -> dict[str, Any]:
        return {"hooks": self.hooks.report(), "audit": None}
