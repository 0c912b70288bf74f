"""A provider's logic without Ray (the actor is provider.py): one adapter,
its health, its concurrency limit, and its delivery journal.

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
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from actors.adapters.base import Adapter
from actors.adapters.errormap import classify
from actors.adapters.registry import get_adapter_class
from actors.durable import JournalEntry, StateStore, StoreUnavailable
from actors.durable.retry import within
from actors.errors import ErrorKind, ProviderError
from actors.messages import CallContext, CallReply, ProbeResult, ProviderStatus, Resolution
from actors.payloads import Payload
from actors.policy.health import HealthChanged, HealthSnapshot, Outcome, observe, shown_state
from actors.policy.outliers.detection import PROBES_KEPT, OutcomeWindow, probe_sample
from actors.provider.faults import NOTHING, LiveFault, injected
from actors.provider.journal import DeliveryJournal, OutcomeWriter
from actors.provider.spending import Spending
from actors.redaction import Redactor
from actors.specs import ProviderSpec, open_spec_store

log = logging.getLogger("aicmo.provider")

Call = tuple[str, Payload, CallContext]


def _state(reply: CallReply) -> str:
    """A keyed send's journal state once its attempt has answered."""
    return "delivered" if reply.ok else ("unknown" if reply.maybe_delivered else "failed")


class ProviderCore:
    """The actor's logic without Ray, so it can be unit-tested with a fake adapter."""

    def __init__(self, spec: ProviderSpec, adapter: Adapter | None = None, clock: Callable[[], float] = time.time,
                 store: StateStore | None = None, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep):
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
        self._sleep = sleep
        self._store = store
        self._limit: asyncio.Semaphore | None = None
        self.journal = DeliveryJournal(spec.capability, spec.name, self.store, clock)
        self.outcomes = OutcomeWriter(self.journal, sleep)
        self.on_change: Any = None  # called with the new status when the state changes
        self.faults = LiveFault(spec.actor_name, clock, sleep)  # `chaos inject`: applied before the adapter
        self.spending = Spending(spec, adapter, self.store, clock)  # spend and quota (spending.py)
        self.probes = OutcomeWindow(probe_size=PROBES_KEPT)  # reported in status(), for outlier ejection
        if adapter.last_resort:
            adapter.attach(self.store())

    def store(self) -> StateStore:
        if self._store is None:  # opened on first use: most providers never journal
            self._store = open_spec_store(self.spec.state)
        return self._store

    # --- attempts --------------------------------------------------------------
    async def call(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        if not self._journals(ctx):  # the common read: nothing to check or write first
            return await self._attempt(method, payload, ctx)
        return (await self.call_many([(method, payload, ctx)]))[0]

    async def call_many(self, calls: list[Call]) -> list[CallReply]:
        """Attempts, run concurrently and answered in order.

        Keyed sends are claimed in memory first (no await between the check
        and the claim), then in the journal, the whole batch in one
        statement that writes `started` where the send is free to be made.
        Those are sent together. A key delivered already is answered from
        the journal; one a crash left `started` or `unknown` is settled on
        its own; one another request of this process is sending right now
        waits for it; none of them holds up the rest of the batch."""
        replies: list[CallReply | None] = [None] * len(calls)
        direct: list[int] = []
        mine: dict[str, int] = {}
        busy: list[int] = []
        same_as: dict[int, int] = {}
        first_of_key: dict[str, int] = {}
        for i, (_, _, ctx) in enumerate(calls):
            key = ctx.idempotency_key
            if key is None or not self._journals(ctx):
                direct.append(i)
            elif key in first_of_key:  # the same request twice in one batch: sent once
                same_as[i] = first_of_key[key]
            else:
                first_of_key[key] = i
                (busy.append(i) if key in self.journal.inflight else mine.__setitem__(key, i))
        claims = self._claim_locally(list(mine))
        others = [asyncio.ensure_future(self._call_when_free(*calls[i])) for i in busy]
        settling: dict[int, asyncio.Future[CallReply]] = {}
        try:
            taken = await self._claim_in_journal([calls[i] for i in mine.values()], claims, replies, mine)
            for key, entry in taken.items():
                i = mine.pop(key)
                settling[i] = asyncio.ensure_future(self._answer_taken(*calls[i], entry, claims.pop(key)))
            now = [*direct, *mine.values()]
            sent = await self._send([calls[i] for i in now], {key: claims[key] for key in mine})
            for i, reply in zip(now, sent, strict=True):
                replies[i] = reply
            for i, reply in zip([*settling, *busy], await asyncio.gather(*settling.values(), *others), strict=True):
                replies[i] = reply
        except BaseException:
            for task in [*others, *settling.values()]:
                task.cancel()
            self._release(claims, {}, self._cut_off())
            raise
        for i, j in same_as.items():
            replies[i] = replies[j]
        return replies  # type: ignore[return-value] - every slot is filled above

    def _replayed(self, value: Any) -> CallReply:
        """The answer for a key delivered earlier: its value, nothing sent again."""
        return CallReply(ok=True, value=value, replayed=True, health=self.health)

    @staticmethod
    def _journals(ctx: CallContext) -> bool:
        return bool(ctx.journal and ctx.idempotency_key and not ctx.dry_run)

    def _cut_off(self) -> CallReply:
        return CallReply(ok=False, error_kind=ErrorKind.OUTCOME_UNKNOWN, maybe_delivered=True,
                         error=f"{self.spec.name}: the attempt was cut off", health=self.health)

    def _claim_locally(self, keys: list[str]) -> dict[str, asyncio.Future[CallReply]]:
        """Marks the keys in flight in this process: synchronous, so nothing
        else here can check them in between."""
        loop = asyncio.get_running_loop()
        claims: dict[str, asyncio.Future[CallReply]] = {key: loop.create_future() for key in keys}
        self.journal.inflight.update(claims)
        return claims

    async def _claim_in_journal(self, calls: list[Call], claims: dict[str, asyncio.Future[CallReply]],
                                replies: list[CallReply | None], mine: dict[str, int]) -> dict[str, JournalEntry]:
        """Journals the sends `started` where they are free to be made, and
        returns the entries of the keys that are not. If the store does not
        answer within the attempts' time, nothing is sent: those calls are
        answered `store_unavailable` and their claims released."""
        if not calls:
            return {}
        deadline = time.monotonic() + max(ctx.timeout_s for _, _, ctx in calls)
        pending = {ctx.idempotency_key: (ctx, method) for method, _, ctx in calls if ctx.idempotency_key in
                   self.outcomes.delivered}
        if pending:  # delivered here, its outcome not journaled yet (the store was down): answer from memory
            for key in pending:
                i = mine.pop(key)  # type: ignore[arg-type]
                replies[i] = self._replayed(self.outcomes.delivered[key].value)  # type: ignore[index]
                self._release({key: claims.pop(key)}, {key: replies[i]}, replies[i])  # type: ignore[arg-type, dict-item]
            calls = [c for c in calls if c[2].idempotency_key not in pending]
        try:
            return await within(deadline, lambda: self.journal.claim([(ctx, method) for method, _, ctx in calls]),
                                sleep=self._sleep)
        except StoreUnavailable as exc:
            refused = CallReply(ok=False, error_kind=ErrorKind.STORE_UNAVAILABLE, health=self.health,
                                error=self.redact(f"{self.spec.name}: not sent: the delivery journal could not be "
                                                  f"written ({exc})"))
            for _, _, ctx in calls:
                key = ctx.idempotency_key
                replies[mine.pop(key)] = refused  # type: ignore[arg-type]
                self._release({key: claims.pop(key)}, {}, refused)  # type: ignore[arg-type]
            return {}

    async def _answer_taken(self, method: str, payload: Payload, ctx: CallContext, entry: JournalEntry,
                            claim: asyncio.Future[CallReply]) -> CallReply:
        """A keyed send whose journal entry says it is not simply free, with
        its key claimed here: delivered already, or settled first."""
        reply = self._cut_off()
        try:
            for _ in range(3):  # settled "not delivered", then taken again by another process: look again
                if entry.state == "delivered":
                    reply = self._replayed(entry.value)
                    return reply
                if entry.state == "failed":
                    [reply] = await self._send([(method, payload, ctx)], {}, journal_first=True)
                    return reply
                settled = await self._settle_claimed(method, payload, ctx)
                if settled.state != "not_delivered":
                    reply = self._settled_reply(settled)
                    return reply
                entry = msgspec.structs.replace(entry, state="failed")
            reply = self._settled_reply(Resolution(state="unknown", error="its journal entry kept changing"))
            return reply
        finally:
            self._release({ctx.idempotency_key: claim}, {ctx.idempotency_key: reply}, reply)  # type: ignore[dict-item]

    async def _call_when_free(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        """A keyed send another request of this process is sending or
        settling right now: its outcome answers this one too if it delivered
        (or may have); otherwise this one goes through the journal itself."""
        key = ctx.idempotency_key
        assert key is not None
        first = await self._wait_for_claim(key)
        if first is not None and (first.ok or first.maybe_delivered):
            return first if not first.ok else self._replayed(first.value)
        return (await self.call_many([(method, payload, ctx)]))[0]

    async def _wait_for_claim(self, key: str) -> CallReply | None:
        """Waits until nobody in this process is sending or settling `key` (a
        claim that ends can be followed by another before this task wakes),
        and returns the outcome of the last claim it waited for. A claim made
        right after this returns, without yielding, is current."""
        last: CallReply | None = None
        while (claim := self.journal.inflight.get(key)) is not None:
            last = await asyncio.shield(claim)
        return last

    def _settled_reply(self, settled: Resolution) -> CallReply:
        """What a keyed send answers once its key's earlier send is settled."""
        if settled.state == "delivered":
            return self._replayed(settled.value)
        if settled.state == "unknown":
            return CallReply(ok=False, error_kind=ErrorKind.OUTCOME_UNKNOWN, maybe_delivered=True,
                             error=f"{self.spec.name}: an earlier send of this request may have been delivered "
                                   f"({settled.error}); not sending it again", health=self.health)
        return CallReply(ok=False, error=f"{self.spec.name}: settled: not delivered", health=self.health)

    async def _send(self, calls: list[Call], claims: dict[str, asyncio.Future[CallReply]],
                    journal_first: bool = False) -> list[CallReply]:
        """Sends now: every keyed send among `calls` is claimed here and
        journaled `started` (or, with `journal_first`, is journaled so now,
        its key's claim held by the caller). Outcomes are journaled after,
        in one statement, and `claims` released with them."""
        keyed = [(method, ctx) for method, _, ctx in calls if self._journals(ctx)]
        if journal_first and keyed:
            await self.journal.write_many([(ctx, method, "started", None, None) for method, ctx in keyed])
        if not keyed:
            return list(await asyncio.gather(*(self._attempt(method, payload, ctx) for method, payload, ctx in calls)))
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
            try:
                # A send cut off (cancelled, or the process going down) may have gone out.
                await self.outcomes.write([
                    (ctx, method, _state(r), r.value, r.error) if (r := outcomes.get(ctx.idempotency_key)) else  # type: ignore[arg-type]
                    (ctx, method, "unknown", None, "cut off mid-send") for method, ctx in keyed], outcomes)
            finally:
                self._release(claims, outcomes, self._cut_off())

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
        acted = NOTHING
        try:
            acted = await self.faults.before(ctx.timeout_s)  # a live fault's delay; its failure is raised
            # Waiting for a free slot counts against the attempt's time: the
            # router budgeted this much for the whole attempt.
            value = await asyncio.wait_for(self._limited(method, payload, ctx, entered), ctx.timeout_s - acted.delay_s)
        except asyncio.CancelledError:
            self.spending.charge(False, ErrorKind.CANCELLED, free=ctx.dry_run or not entered[0])
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a kind
            kind, message, retry_after, maybe_delivered = classify(exc)
            self.spending.charge(False, kind, free=ctx.dry_run or not entered[0])
            maybe_delivered = maybe_delivered and entered[0]
            latency = (time.monotonic() - started) * 1000
            message = self.redact(f"{self.spec.name}: {message}" if not message.startswith(self.spec.name) else message)
            if not ctx.dry_run:
                self.record(Outcome(at=self._clock(), ok=False, latency_ms=latency, error_kind=kind, error=message, retry_after_s=retry_after))
            return CallReply(ok=False, error_kind=kind, error=message, latency_ms=latency, retry_after_s=retry_after,
                             health=self.health, maybe_delivered=maybe_delivered, injected=injected(exc, acted),
                             **self.spending.stamp())
        finally:
            self.in_flight -= 1
        latency = (time.monotonic() - started) * 1000
        self.spending.charge(True, None, free=ctx.dry_run)
        if not ctx.dry_run:  # a dry run says nothing about the provider's health
            self.record(Outcome(at=self._clock(), ok=True, latency_ms=latency))
        # Values travel and are journaled: plain data only (a header object
        # that is a str subclass becomes its text).
        value = msgspec.to_builtins(value, enc_hook=str)
        if ctx.dry_run:  # what it would have sent may hold a secret read from the environment
            value = self.redact.value(value)
        return CallReply(ok=True, value=value, latency_ms=latency, health=self.health, injected=acted.injected,
                         **self.spending.stamp())

    async def _limited(self, method: str, payload: Payload, ctx: CallContext, entered: list[bool]) -> Any:
        assert self._limit is not None
        async with self._limit:
            entered[0] = True
            return await self.adapter.call(method, payload, ctx)

    # --- unknown outcomes ------------------------------------------------------
    async def resolve(self, method: str, payload: Payload, ctx: CallContext) -> Resolution:
        """Was the keyed request delivered here? Asked by a router after an
        attempt whose outcome it could not see (a timeout, a crash). The key
        is claimed meanwhile, so a concurrent request waits for this answer
        instead of settling too (a late "not delivered" would overwrite a
        delivery made in between)."""
        key = ctx.idempotency_key
        assert key is not None, "resolve needs an idempotency key"
        last = await self._wait_for_claim(key)
        if last is not None and last.ok:
            return Resolution(state="delivered", value=last.value)
        if key in self.outcomes.delivered:
            return Resolution(state="delivered", value=self.outcomes.delivered[key].value)
        [claim] = self._claim_locally([key]).values()
        resolution = Resolution(state="unknown", error="settling was cut off")
        try:
            deadline = time.monotonic() + ctx.timeout_s
            entry = await within(deadline, lambda: self.journal.get(key), sleep=self._sleep)
            if entry is None or entry.state == "failed":
                resolution = Resolution(state="not_delivered")
            elif entry.state == "delivered":
                resolution = Resolution(state="delivered", value=entry.value)
            else:
                resolution = await self._settle_claimed(method, payload, ctx)
            return resolution
        except StoreUnavailable as exc:
            resolution = Resolution(state="unknown", error=self.redact(f"its journal cannot be read now: {exc}"))
            return resolution
        finally:
            self._release({key: claim}, {}, self._settled_reply(resolution))

    async def _settle_claimed(self, method: str, payload: Payload, ctx: CallContext) -> Resolution:
        """Settles a send the journal left `started` or `unknown`, its key
        claimed here by the caller."""
        key = ctx.idempotency_key
        assert key is not None
        try:
            value = await asyncio.wait_for(self.adapter.reconcile(method, payload, ctx), ctx.timeout_s)
        except NotImplementedError:
            if method in self.adapter.resends_deduplicated:
                # The provider drops a repeat of the same request itself.
                [reply] = await self._send([(method, payload, ctx)], {}, journal_first=True)
                if reply.ok:
                    return Resolution(state="delivered", value=reply.value)
                return Resolution(state="unknown" if reply.maybe_delivered else "not_delivered", error=reply.error)
            return Resolution(state="unknown", error=f"the {self.spec.adapter} API offers no way to look a request up")
        except (ProviderError, asyncio.TimeoutError) as exc:
            return Resolution(state="unknown", error=self.redact(f"cannot ask {self.spec.name} now: {exc}"))
        if value is None:
            await self.outcomes.write([(ctx, method, "failed", None, "reconciled: not delivered")], {})
            return Resolution(state="not_delivered")
        await self.outcomes.write([(ctx, method, "delivered", value, None)],
                                  {key: CallReply(ok=True, value=value, health=self.health)})
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
                self._probed(probe_sample(self._clock(), False, latency, kind))
            return ProbeResult(provider=self.spec.name, capability=self.spec.capability, ok=False, error_kind=kind,
                               error=message, latency_ms=latency, delivers=self.adapter.delivers)
        latency = (time.monotonic() - started) * 1000
        self.spending.balance_due_now()  # a passing probe: read the live balance on the next round too
        if self.adapter.has_probe:
            # A passing probe counts as a success, so a provider that cooled
            # down can come back without risking a real request.
            self.record(Outcome(at=self._clock(), ok=True, latency_ms=latency))
            self._probed(probe_sample(self._clock(), True, latency))
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
        self.health, events = observe(self.health, outcome, self.policy)
        for event in events:
            if isinstance(event, HealthChanged):
                log.warning("%s: health %s -> %s (%s)", self.spec.actor_name, event.old, event.new, event.reason)
                if self.on_change is not None:
                    self.on_change(self.status())

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
        return self.spending.into(msgspec.structs.replace(status, health=shown_state(self.health, self._clock())))
