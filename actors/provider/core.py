"""A provider's logic without Ray (the actor is actor.py): one adapter, its
health, its concurrency limit; keyed sends and their settling beside it.

It is the single owner and writer of its provider's health: every attempt
and every probe becomes an `Outcome` folded in by `policy.health.observe`
(`record`, the one method that writes it). Each reply carries the health
after the attempt, so routers learn it without another round trip.

One attempt:

    live fault (faults.py) -> concurrency limit -> adapter -> classify (errormap)
        -> meter (spending.py) -> health (record) -> the reply, with its quota fields

Collaborators come in through the constructor: the clock (wall time,
monotonic time, sleep: actors/clock.py), the state store, and the
listeners (listener.py) that hear replies, health changes, spend, quota
flips and applied faults. Keyed, non-idempotent requests (`ctx.journal`) go
through keyed_sends.py (claims in memory and in the journal, waiting for a
key in flight) and settling.py (outcomes a crash or a timeout left unknown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import msgspec

from actors.adapters.base import Adapter
from actors.adapters.errormap import classify
from actors.adapters.registry import get_adapter_class
from actors.clock import SYSTEM_CLOCK, Clock
from actors.durable import StateStore
from actors.errors import ErrorKind
from actors.messages import CallContext, CallReply, ProbeResult, ProviderStatus, Resolution
from actors.payloads import Payload
from actors.policy.health import HealthChanged, HealthSnapshot, Outcome, observe, shown_state
from actors.policy.outliers.detection import PROBES_KEPT, OutcomeWindow, probe_sample
from actors.provider.faults import NOTHING, Acted, LiveFault, injected
from actors.provider.journal import Claims, DeliveryJournal, OutcomeWriter
from actors.provider.journaled_send import Answers, Call, JournaledSend, journals
from actors.provider.keyed_sends import KeyedSends
from actors.provider.listener import Listeners, ProviderListener
from actors.provider.pacing import AtRateLimit, Pacing, max_pace_s
from actors.provider.settling import Settling
from actors.provider.spending import Spending
from actors.redaction import Redactor
from actors.specs import ProviderSpec, open_spec_store
from actors.telemetry.spans import NO_TRACING

log = logging.getLogger("aicmo.provider")


class ProviderCore:
    """The actor's logic without Ray, so it can be unit-tested with a fake adapter and a fake clock."""

    def __init__(self, spec: ProviderSpec, adapter: Adapter | None = None, clock: Clock = SYSTEM_CLOCK,
                 store: StateStore | None = None, listeners: Iterable[ProviderListener] = (), tracing: Any = NO_TRACING):
        self.spec = spec
        self.tracing = tracing  # actors/telemetry: a span around each attempt the router traced
        if adapter is None:
            adapter_cls = get_adapter_class(spec.adapter)
            adapter = adapter_cls(adapter_cls.Settings.model_validate(spec.settings), capability=spec.capability, provider=spec.name)
        self.adapter = adapter
        self.redact = Redactor([*adapter.settings.secret_values(), *spec.secret_values()])
        self.policy = spec.health_policy()
        self.health = HealthSnapshot()
        self.in_flight = 0
        self.clock = clock
        self._store = store
        self._limit: asyncio.Semaphore | None = None
        self.pacing = Pacing(spec)  # its configured rate limit, for every router at once (pacing.py)
        self.listeners = Listeners(listeners)
        self.faults = LiveFault(spec.actor_name, clock, self.listeners)  # `chaos inject`: applied before the adapter
        self.spending = Spending(spec, adapter, self.store, clock, self.listeners, self.status)  # spend and quota
        self.probes = OutcomeWindow(probe_size=PROBES_KEPT)  # reported in status(), for outlier ejection
        # Keyed sends: claimed in memory and in the journal, settled when a crash left them in doubt.
        self.claims = Claims()
        self.journal = DeliveryJournal(spec.capability, spec.name, self.store, clock)
        self.outcomes = OutcomeWriter(self.journal, clock, self.spending)  # outcomes written with their charges
        answers = Answers(spec.name, lambda: self.health)
        sender = JournaledSend(self._attempt, self.journal, self.outcomes, self.claims, answers)
        self.settling = Settling(spec, adapter, sender, self.journal, self.outcomes, self.claims, answers,
                                 self.redact, clock)
        self.keyed = KeyedSends(spec.name, sender, self.settling, self.journal, self.outcomes, self.claims, answers,
                                self.redact, clock)
        if adapter.last_resort:
            adapter.attach(self.store(), clock)

    def store(self) -> StateStore:
        if self._store is None:  # opened on first use: most providers never journal
            self._store = open_spec_store(self.spec.state)
        return self._store

    # --- calls -----------------------------------------------------------------
    async def call(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        if not journals(ctx):  # the common read: nothing to check or write first
            reply = await self._attempt(method, payload, ctx)
        else:
            [reply] = await self.keyed.call_many([(method, payload, ctx)])
        self.listeners.on_reply(reply, ctx.dry_run)
        return reply

    async def call_many(self, calls: list[Call]) -> list[CallReply]:
        """A router's batch: run concurrently, answered in order (keyed_sends.py)."""
        replies = await self.keyed.call_many(calls)
        for (_, _, ctx), reply in zip(calls, replies, strict=True):
            self.listeners.on_reply(reply, ctx.dry_run)
        return replies

    async def resolve(self, method: str, payload: Payload, ctx: CallContext) -> Resolution:
        """Was this keyed request delivered here? (settling.py)"""
        return await self.settling.resolve(method, payload, ctx)

    # --- one attempt -------------------------------------------------------------
    async def _attempt(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        """One attempt; in a span, child of the router's attempt span, when the
        router traced it; a direct call's span is the request's own (its ids in the reply)."""
        if not self.tracing.on or (ctx.traceparent is None and not ctx.direct):
            return await self._attempt_once(method, payload, ctx)
        if ctx.direct:
            span = self.tracing.direct_call(ctx.traceparent, self.spec.name, self.spec.capability, method,
                                            ctx.request_id)
        else:
            span = self.tracing.provider_call(ctx.traceparent, self.spec.name, self.spec.capability, method)
        if span is None:
            return await self._attempt_once(method, payload, ctx)
        try:
            reply = await self._attempt_once(method, payload, ctx)
        except BaseException:  # cancelled: the router's hedge partner answered first
            span.set_attribute("aicmo.cancelled", True)
            span.end()
            raise
        self.tracing.provider_end(span, reply)
        if ctx.direct:
            trace_id, span_id = self.tracing.ids(span)
            reply = msgspec.structs.replace(reply, trace_id=trace_id, span_id=span_id)
        return reply

    async def _attempt_once(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        if self._limit is None:
            self._limit = asyncio.Semaphore(self.spec.max_concurrency)
        started = self.clock.monotonic()
        self.in_flight += 1
        entered = [False]  # whether the adapter got the request: before that, nothing can have been sent
        acted = NOTHING
        try:
            acted = await self.faults.before(ctx.timeout_s)  # a live fault's delay; its failure is raised
            # Waiting for a free slot counts against the attempt's time: the
            # router budgeted this much for the whole attempt.
            value = await asyncio.wait_for(self._limited(method, payload, ctx, entered, max_pace_s(ctx, acted.delay_s)),
                                           ctx.timeout_s - acted.delay_s)
        except asyncio.CancelledError:
            self.spending.charge(False, ErrorKind.CANCELLED, free=ctx.dry_run or not entered[0], key=_held(ctx))
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a kind
            return self._failed(exc, ctx, started, entered[0], acted)
        finally:
            self.in_flight -= 1
        if isinstance(value, AtRateLimit):
            return self._at_rate_limit(value, started, acted)
        return self._succeeded(value, ctx, started, acted)

    async def _limited(self, method: str, payload: Payload, ctx: CallContext, entered: list[bool],
                       max_pace: float) -> Any:
        assert self._limit is not None
        async with self._limit:
            wait = self.pacing.slot(self.clock.time(), max_pace)  # the slot last: it is spent as the call goes
            if isinstance(wait, AtRateLimit):
                return wait
            if wait > 0:
                await self.clock.sleep(wait)
            entered[0] = True
            return await self.adapter.call(method, payload, ctx)

    def _at_rate_limit(self, full: AtRateLimit, started: float, acted: Acted) -> CallReply:
        """Refused before the adapter: our own pace, not the provider's answer,
        so neither its health nor its spend hears of it."""
        return CallReply(ok=False, error_kind=ErrorKind.RATE_LIMITED, error=str(full),
                         latency_ms=(self.clock.monotonic() - started) * 1000, retry_after_s=full.wait_s,
                         health=self.health, injected=acted.injected, paced_until=full.free_at,
                         **self.spending.stamp())

    def _failed(self, exc: BaseException, ctx: CallContext, started: float, entered: bool, acted: Acted) -> CallReply:
        kind, message, retry_after, maybe_delivered = classify(exc)
        self.spending.charge(False, kind, free=ctx.dry_run or not entered, key=_held(ctx))
        latency = (self.clock.monotonic() - started) * 1000
        message = self.redact(f"{self.spec.name}: {message}" if not message.startswith(self.spec.name) else message)
        if not ctx.dry_run:
            self.record(Outcome(at=self.clock.time(), ok=False, latency_ms=latency, error_kind=kind, error=message,
                                retry_after_s=retry_after))
        return CallReply(ok=False, error_kind=kind, error=message, latency_ms=latency, retry_after_s=retry_after,
                         health=self.health, maybe_delivered=maybe_delivered and entered, injected=injected(exc, acted),
                         **self.spending.stamp())

    def _succeeded(self, value: Any, ctx: CallContext, started: float, acted: Acted) -> CallReply:
        latency = (self.clock.monotonic() - started) * 1000
        self.spending.charge(True, None, free=ctx.dry_run, key=_held(ctx))
        if not ctx.dry_run:  # a dry run says nothing about the provider's health
            self.record(Outcome(at=self.clock.time(), ok=True, latency_ms=latency))
        # Values travel and are journaled: plain data only (a header object
        # that is a str subclass becomes its text).
        value = msgspec.to_builtins(value, enc_hook=str)
        if ctx.dry_run:  # what it would have sent may hold a secret read from the environment
            value = self.redact.value(value)
        return CallReply(ok=True, value=value, latency_ms=latency, health=self.health, injected=acted.injected,
                         **self.spending.stamp())

    # --- health ------------------------------------------------------------------
    async def probe(self, timeout_s: float = 5.0) -> ProbeResult:
        started = self.clock.monotonic()
        try:
            await asyncio.wait_for(self.adapter.probe(), timeout_s)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001
            kind, message, retry_after, _ = classify(exc)
            latency = (self.clock.monotonic() - started) * 1000
            message = self.redact(message)
            if self.adapter.has_probe:
                self.record(Outcome(at=self.clock.time(), ok=False, latency_ms=latency, error_kind=kind, error=message,
                                    retry_after_s=retry_after))
                self._probed(probe_sample(self.clock.time(), False, latency, kind))
            return ProbeResult(provider=self.spec.name, capability=self.spec.capability, ok=False, error_kind=kind,
                               error=message, latency_ms=latency, delivers=self.adapter.delivers)
        latency = (self.clock.monotonic() - started) * 1000
        self.spending.balance_due_now()  # a passing probe: read the live balance on the next round too
        if self.adapter.has_probe:
            # A passing probe counts as a success, so a provider that cooled
            # down can come back without risking a real request.
            self.record(Outcome(at=self.clock.time(), ok=True, latency_ms=latency))
            self._probed(probe_sample(self.clock.time(), True, latency))
        return ProbeResult(provider=self.spec.name, capability=self.spec.capability, ok=True, latency_ms=latency,
                           delivers=self.adapter.delivers)

    def resume(self, health: HealthSnapshot) -> bool:
        """Starts from the health an earlier process of this actor had (its
        router kept it): a process that crashed says nothing about the
        provider it talks to. Only before this process has seen an outcome."""
        if self.health.total_calls or not health.total_calls:
            return False
        self.health = health
        return True

    def record(self, outcome: Outcome) -> None:
        """The one writer of the provider's health; a change of state is told to the listeners."""
        self.health, events = observe(self.health, outcome, self.policy)
        for event in events:
            if isinstance(event, HealthChanged):
                log.warning("%s: health %s -> %s (%s)", self.spec.actor_name, event.old, event.new, event.reason)
                self.listeners.on_health_changed(self.status())

    def _probed(self, sample: Any) -> None:
        if sample is not None:
            self.probes.add(sample)

    def status(self) -> ProviderStatus:
        status = ProviderStatus.from_health(
            self.health,
            name=self.spec.name,
            capability=self.spec.capability,
            adapter=self.spec.adapter,
            in_flight=self.in_flight,
            max_concurrency=self.spec.max_concurrency,
            delivers=self.adapter.delivers,
            last_resort=self.adapter.last_resort,
            warnings=self.adapter.warnings(),
            cleartext=type(self.adapter).cleartext_settings(self.adapter.settings),
            fault=self.faults.shown(),
            probe_samples=list(self.probes.samples()),
        )
        return self.spending.into(msgspec.structs.replace(status, health=shown_state(self.health, self.clock.time())))


def _held(ctx: CallContext) -> str | None:
    """The key a journaled send's charge is held by until its outcome is written with it."""
    return ctx.idempotency_key if journals(ctx) else None
