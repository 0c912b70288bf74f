"""The provider actor: one adapter, its health, its concurrency limit, and
its delivery journal.

It is the single owner and writer of its provider's health: every attempt
and every probe becomes an `Outcome` folded in by `policy.health.observe`.
Each reply carries the health after the attempt, so routers learn it without
another round trip; changes of state are also pushed to the router and the
supervisor, off the request's path.

Keyed, non-idempotent requests (`ctx.journal`) go through the journal
(journal.py): a key already delivered is answered from it, a key being sent
right now is waited for, and one whose outcome a crash left unknown is
settled before anything is sent again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
import ray

from actors.adapters.base import Adapter
from actors.adapters.registry import get_adapter_class
from actors.durable import StateStore, open_store
from actors.errors import ErrorKind, ProviderError
from actors.messages import CallContext, CallReply, ProbeResult, ProviderStatus, Resolution
from actors.payloads import Payload
from actors.policy.health import HealthChanged, HealthSnapshot, Outcome, observe, shown_state
from actors.redaction import Redactor
from actors.runtime.journal import DeliveryJournal
from actors.runtime.specs import SUPERVISOR_NAME, ProviderSpec, router_name

log = logging.getLogger("aicmo.provider")


def _state(reply: CallReply) -> str:
    """A keyed send's journal state once its attempt has answered."""
    return "delivered" if reply.ok else ("unknown" if reply.maybe_delivered else "failed")


def classify(exc: BaseException) -> tuple[ErrorKind, str, float | None, bool]:
    """Sort an exception raised by an attempt into our closed set of kinds:
    (kind, message, retry_after_s, maybe_delivered)."""
    if isinstance(exc, ProviderError):
        return exc.kind, exc.message, exc.retry_after_s, exc.maybe_delivered
    if isinstance(exc, asyncio.TimeoutError):
        # Cut off mid-call: the adapter may have sent the request already.
        return ErrorKind.TIMEOUT, "no answer within the attempt's time", None, True
    return ErrorKind.CRASHED, f"adapter raised {type(exc).__name__}: {exc}", None, True


class ProviderCore:
    """The actor's logic without Ray, so it can be unit-tested with a fake adapter."""

    def __init__(self, spec: ProviderSpec, adapter: Adapter | None = None, clock: Callable[[], float] = time.time,
                 store: StateStore | None = None):
        self.spec = spec
        if adapter is None:
            adapter_cls = get_adapter_class(spec.adapter)
            adapter = adapter_cls(adapter_cls.Settings.model_validate(spec.settings), capability=spec.capability, provider=spec.name)
        self.adapter = adapter
        self.redact = Redactor([*adapter.settings.secret_values(), *spec.secret_values()])
        self.policy = spec.health_policy()
        self.health = HealthSnapshot()
        self.in_flight = 0
        self._clock = clock
        self._store = store
        self._limit: asyncio.Semaphore | None = None
        self.journal = DeliveryJournal(spec.capability, spec.name, self.store, clock)
        self.on_change: Any = None  # called with the new status when the state changes
        if adapter.last_resort:
            adapter.attach(self.store())

    def store(self) -> StateStore:
        if self._store is None:  # opened on first use: most providers never journal
            self._store = open_store(self.spec.state_url)
        return self._store

    # --- attempts --------------------------------------------------------------
    async def call(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        if not self._journals(ctx):  # the common read: nothing to check or write first
            return await self._attempt(method, payload, ctx)
        return (await self.call_many([(method, payload, ctx)]))[0]

    async def call_many(self, calls: list[tuple[str, Payload, CallContext]]) -> list[CallReply]:
        """Attempts, run concurrently and answered in order.

        Keyed sends are checked against the journal first, the whole batch in
        one read: a key delivered already is answered from it; the others are
        claimed (marked in flight, journaled `started`) in the same step as
        the check, so no other batch can send them in between, and sent
        together. A key that is being sent right now, or that a crash left
        `started` or `unknown`, waits or is settled on its own, without
        holding up the rest of the batch."""
        replies: list[CallReply | None] = [None] * len(calls)
        now: list[int] = []
        on_their_own: list[int] = []
        first_of_key: dict[str, int] = {}
        same_as: dict[int, int] = {}
        keys = [ctx.idempotency_key for _, _, ctx in calls if self._journals(ctx)]
        inflight = self.journal.inflight
        known = self.journal.get_many([k for k in keys if k not in inflight]) if keys else {}  # type: ignore[misc]
        for i, (_, _, ctx) in enumerate(calls):
            key = ctx.idempotency_key
            if key is None or not self._journals(ctx):
                now.append(i)
            elif key in first_of_key:  # the same request twice in one batch: sent once
                same_as[i] = first_of_key[key]
            else:
                first_of_key[key] = i
                entry = known.get(key)
                if key in inflight or (entry is not None and entry.state in ("started", "unknown")):
                    on_their_own.append(i)
                elif entry is not None and entry.state == "delivered":
                    replies[i] = self._replayed(entry.value)
                else:
                    now.append(i)
        waiting = [asyncio.ensure_future(self._send_when_clear(*calls[i])) for i in on_their_own]
        try:
            # Awaited directly, so its claim runs before this task first yields.
            sent = await self._send([calls[i] for i in now]) if now else []
            waited = await asyncio.gather(*waiting)
        except BaseException:
            for task in waiting:
                task.cancel()
            raise
        for i, reply in [*zip(now, sent, strict=True), *zip(on_their_own, waited, strict=True)]:
            replies[i] = reply
        for i, j in same_as.items():
            replies[i] = replies[j]
        return replies  # type: ignore[return-value] - every slot is filled above

    def _replayed(self, value: Any) -> CallReply:
        """The answer for a key delivered earlier: its value, nothing sent again."""
        return CallReply(ok=True, value=value, replayed=True, health=self.health)

    @staticmethod
    def _journals(ctx: CallContext) -> bool:
        return bool(ctx.journal and ctx.idempotency_key and not ctx.dry_run)

    async def _send_when_clear(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        """A keyed send that must first wait for another send or settlement of
        its key here, or settle what a crash left."""
        reply = await self._answer_without_sending(method, payload, ctx)
        if reply is None:  # nothing yielded since the last check: claim it now
            [reply] = await self._send([(method, payload, ctx)])
        return reply

    async def _wait_for_claim(self, key: str) -> CallReply | None:
        """Waits until nobody in this process is sending or settling `key` (a
        claim that ends can be followed by another before this task wakes),
        and returns the outcome of the last claim it waited for. The caller's
        next check of the journal is current if it does not yield first."""
        last: CallReply | None = None
        while (claim := self.journal.inflight.get(key)) is not None:
            last = await asyncio.shield(claim)
        return last

    async def _answer_without_sending(self, method: str, payload: Payload, ctx: CallContext) -> CallReply | None:
        """A keyed send's answer from what is known already, or None: send it."""
        key = ctx.idempotency_key
        assert key is not None
        first = await self._wait_for_claim(key)  # the same request being sent right now: never twice at once
        if first is not None and (first.ok or first.maybe_delivered):
            return first
        entry = self.journal.get(key)
        if entry is not None and entry.state == "delivered":
            return self._replayed(entry.value)
        if entry is not None and entry.state in ("started", "unknown"):
            settled = await self._settle(method, payload, ctx)
            if settled.state != "not_delivered":
                return self._settled_reply(settled)
        return None

    def _settled_reply(self, settled: Resolution) -> CallReply:
        """What a keyed send answers once its key's earlier send is settled."""
        if settled.state == "delivered":
            return self._replayed(settled.value)
        if settled.state == "unknown":
            return CallReply(ok=False, error_kind=ErrorKind.OUTCOME_UNKNOWN, maybe_delivered=True,
                             error=f"{self.spec.name}: an earlier send of this request may have been delivered "
                                   f"({settled.error}); not sending it again", health=self.health)
        return CallReply(ok=False, error=f"{self.spec.name}: settled: not delivered", health=self.health)

    async def _send(self, calls: list[tuple[str, Payload, CallContext]]) -> list[CallReply]:
        """Send now. Keyed sends are claimed before the first await (marked in
        flight, journaled `started`, one transaction for the whole batch) and
        journaled with their outcome after, again in one."""
        keyed = [(method, ctx) for method, _, ctx in calls if self._journals(ctx)]
        if not keyed:
            return list(await asyncio.gather(*(self._attempt(method, payload, ctx) for method, payload, ctx in calls)))
        claims = self._claim(keyed)
        outcomes: dict[str, CallReply] = {}
        tasks = [asyncio.ensure_future(self._attempt(method, payload, ctx)) for method, payload, ctx in calls]
        try:
            replies = list(await asyncio.gather(*tasks))
            for (_, _, ctx), reply in zip(calls, replies, strict=True):
                if self._journals(ctx):
                    outcomes[ctx.idempotency_key] = reply  # type: ignore[index]
            return replies
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
        finally:
            cut_off = CallReply(ok=False, error_kind=ErrorKind.OUTCOME_UNKNOWN, maybe_delivered=True,
                                error=f"{self.spec.name}: the attempt was cut off", health=self.health)
            try:
                # A send cut off (cancelled, or the process going down) may have gone out.
                self.journal.write_many([
                    (ctx, method, _state(r), r.value, r.error) if (r := outcomes.get(ctx.idempotency_key)) else  # type: ignore[arg-type]
                    (ctx, method, "unknown", None, "cut off mid-send") for method, ctx in keyed])
            finally:
                self._release(claims, outcomes, cut_off)

    def _claim(self, keyed: list[tuple[str, CallContext]]) -> dict[str, asyncio.Future[CallReply]]:
        """Marks the keys in flight and journals them `started`. If the journal
        cannot be written, nothing is sent: the claims are released and the
        error raised."""
        loop = asyncio.get_running_loop()
        claims: dict[str, asyncio.Future[CallReply]] = {ctx.idempotency_key: loop.create_future()  # type: ignore[misc]
                                                        for _, ctx in keyed}
        self.journal.inflight.update(claims)
        try:
            self.journal.write_many([(ctx, method, "started", None, None) for method, ctx in keyed])
        except BaseException:
            self._release(claims, {}, CallReply(ok=False, error=f"{self.spec.name}: not sent: the journal could not "
                                                                "be written", health=self.health))
            raise
        return claims

    def _release(self, claims: dict[str, asyncio.Future[CallReply]], outcomes: dict[str, CallReply],
                 otherwise: CallReply) -> None:
        """Ends the claims; whoever waited on a key gets its outcome."""
        for key, future in claims.items():
            if self.journal.inflight.get(key) is future:
                del self.journal.inflight[key]
            if not future.done():
                future.set_result(outcomes.get(key, otherwise))

    async def _attempt(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        if self._limit is None:
            self._limit = asyncio.Semaphore(self.spec.max_concurrency)
        started = time.monotonic()
        self.in_flight += 1
        entered = [False]  # whether the adapter got the request: before that, nothing can have been sent
        try:
            # Waiting for a free slot counts against the attempt's time: the
            # router budgeted this much for the whole attempt.
            value = await asyncio.wait_for(self._limited(method, payload, ctx, entered), ctx.timeout_s)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a kind
            kind, message, retry_after, maybe_delivered = classify(exc)
            maybe_delivered = maybe_delivered and entered[0]
            latency = (time.monotonic() - started) * 1000
            message = self.redact(f"{self.spec.name}: {message}" if not message.startswith(self.spec.name) else message)
            if not ctx.dry_run:
                self.record(Outcome(at=self._clock(), ok=False, latency_ms=latency, error_kind=kind, error=message, retry_after_s=retry_after))
            return CallReply(ok=False, error_kind=kind, error=message, latency_ms=latency, retry_after_s=retry_after,
                             health=self.health, maybe_delivered=maybe_delivered)
        finally:
            self.in_flight -= 1
        latency = (time.monotonic() - started) * 1000
        if not ctx.dry_run:  # a dry run says nothing about the provider's health
            self.record(Outcome(at=self._clock(), ok=True, latency_ms=latency))
        # Values travel and are journaled: plain data only (a header object
        # that is a str subclass becomes its text).
        value = msgspec.to_builtins(value, enc_hook=str)
        if ctx.dry_run:  # what it would have sent may hold a secret read from the environment
            value = self.redact.value(value)
        return CallReply(ok=True, value=value, latency_ms=latency, health=self.health)

    async def _limited(self, method: str, payload: Payload, ctx: CallContext, entered: list[bool]) -> Any:
        assert self._limit is not None
        async with self._limit:
            entered[0] = True
            return await self.adapter.call(method, payload, ctx)

    # --- unknown outcomes ------------------------------------------------------
    async def resolve(self, method: str, payload: Payload, ctx: CallContext) -> Resolution:
        """Was the keyed request delivered here? Asked by a router after an
        attempt whose outcome it could not see (a timeout, a crash)."""
        key = ctx.idempotency_key
        assert key is not None, "resolve needs an idempotency key"
        last = await self._wait_for_claim(key)
        if last is not None and last.ok:
            return Resolution(state="delivered", value=last.value)
        entry = self.journal.get(key)
        if entry is None or entry.state == "failed":
            return Resolution(state="not_delivered")
        if entry.state == "delivered":
            return Resolution(state="delivered", value=entry.value)
        return await self._settle(method, payload, ctx)

    async def _settle(self, method: str, payload: Payload, ctx: CallContext) -> Resolution:
        """Settles a send the journal left `started` or `unknown`. The key is
        claimed meanwhile, so a concurrent request waits for this answer
        instead of settling too (a late "not delivered" would overwrite a
        delivery made in between)."""
        key = ctx.idempotency_key
        assert key is not None
        claim: asyncio.Future[CallReply] = asyncio.get_running_loop().create_future()
        self.journal.inflight[key] = claim
        resolution = Resolution(state="unknown", error="settling was cut off")
        try:
            resolution = await self._settle_claimed(method, payload, ctx)
            return resolution
        finally:
            self._release({key: claim}, {}, self._settled_reply(resolution))

    async def _settle_claimed(self, method: str, payload: Payload, ctx: CallContext) -> Resolution:
        key = ctx.idempotency_key
        assert key is not None
        try:
            value = await asyncio.wait_for(self.adapter.reconcile(method, payload, ctx), ctx.timeout_s)
        except NotImplementedError:
            if method in self.adapter.resends_deduplicated:
                # The provider drops a repeat of the same request itself.
                [reply] = await self._send([(method, payload, ctx)])
                if reply.ok:
                    return Resolution(state="delivered", value=reply.value)
                return Resolution(state="unknown" if reply.maybe_delivered else "not_delivered", error=reply.error)
            return Resolution(state="unknown", error=f"the {self.spec.adapter} API offers no way to look a request up")
        except (ProviderError, asyncio.TimeoutError) as exc:
            return Resolution(state="unknown", error=self.redact(f"cannot ask {self.spec.name} now: {exc}"))
        if value is None:
            self.journal.write(key, ctx.request_id, method, "failed", error="reconciled: not delivered")
            return Resolution(state="not_delivered")
        self.journal.write(key, ctx.request_id, method, "delivered", value=value)
        return Resolution(state="delivered", value=value)

    # --- health ----------------------------------------------------------------
    async def probe(self, timeout_s: float = 5.0) -> ProbeResult:
        started = time.monotonic()
        try:
            await asyncio.wait_for(self.adapter.probe(), timeout_s)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001
            kind, message, retry_after, _ = classify(exc)
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
        )
        return msgspec.structs.replace(status, health=shown_state(self.health, self._clock()))


@ray.remote
class ProviderActor:
    def __init__(self, spec: ProviderSpec, namespace: str):
        from actors.ops.observers import ProviderOps

        self._core = ProviderCore(spec)
        self._core.on_change = self._push_change
        self._namespace = namespace
        self._peers: dict[str, Any] = {}
        self._ops = ProviderOps(spec, self._core.status)
        try:  # start the ops loop (gauges, audit flushes) without waiting for traffic, also after a restart
            ray.get_runtime_context().current_actor.ready.remote()
        except Exception:  # noqa: BLE001
            pass

    def _peer(self, name: str) -> Any:
        """The supervisor's or the router's handle, looked up once: a lookup
        is a blocking call to Ray's GCS, made in the middle of a request (a
        health change), that holds up every call in flight on this actor."""
        handle = self._peers.get(name)
        if handle is None:
            handle = self._peers[name] = ray.get_actor(name, namespace=self._namespace)
        return handle

    def _push_change(self, status: ProviderStatus) -> None:
        # Fire and forget: a slow or restarting supervisor must never hold up a request.
        self._ops.health_changed(status)  # gauges and on_health_change hooks: enqueued only
        for name in (SUPERVISOR_NAME, router_name(status.capability)):
            self._tell(name, status, resend=True)

    def _tell(self, name: str, status: ProviderStatus, resend: bool) -> None:
        try:
            peer = self._peer(name)
            if name == SUPERVISOR_NAME:
                ref = peer.report.remote(status)
            else:
                ref = peer.health_changed.remote(status.name, self._core.health)
        except Exception:  # noqa: BLE001 - not deployed yet, or gone
            self._peers.pop(name, None)
            return
        if not resend:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in a request: the supervisor's sampling catches up
            return

        # A redeploy may have replaced the peer with a new actor under the same
        # name: if the call fails, look the name up again and send once more.
        def sent(done: Any) -> None:
            if done.exception() is not None:
                loop.call_soon_threadsafe(self._tell_again, name, status)

        ref.future().add_done_callback(sent)

    def _tell_again(self, name: str, status: ProviderStatus) -> None:
        self._peers.pop(name, None)
        self._tell(name, status, resend=False)

    async def call(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        reply = await self._core.call(method, payload, ctx)
        self._ops.observe_call(reply, ctx.dry_run)
        return reply

    async def call_many(self, calls: list[tuple[str, Payload, CallContext]]) -> list[CallReply]:
        """A router's batch (actors/runtime/coalesce.py): its keyed sends checked
        and journaled together, all run concurrently, answered in order."""
        replies = await self._core.call_many(calls)
        for (_, _, ctx), reply in zip(calls, replies, strict=True):
            self._ops.observe_call(reply, ctx.dry_run)
        return replies

    async def resolve(self, method: str, payload: Payload, ctx: CallContext) -> Resolution:
        return await self._core.resolve(method, payload, ctx)

    async def probe(self, timeout_s: float = 5.0) -> ProbeResult:
        return await self._core.probe(timeout_s)

    def status(self) -> ProviderStatus:
        return self._core.status()

    def health(self) -> HealthSnapshot:
        return self._core.health

    def digest(self) -> str:
        return self._core.spec.digest

    async def ready(self) -> str:
        self._ops.ensure_started()
        return self._core.spec.actor_name

    def node_id(self) -> str:
        """The Ray node this actor runs on: where its traffic to the provider goes from."""
        return ray.get_runtime_context().get_node_id()

    async def ops_report(self) -> dict[str, Any]:
        """Its on_health_change hooks: calls, failures, load errors."""
        return self._ops.report()

    def inject_fault(self, **changes: Any) -> dict[str, Any]:
        """Change a simulated provider's behaviour at run time (demo and fault tests)."""
        reconfigure = getattr(self._core.adapter, "reconfigure", None)
        if reconfigure is None:
            raise TypeError(f"{self._core.spec.adapter} adapter takes no injected faults; only `simulated` does")
        return reconfigure(**changes).model_dump()
