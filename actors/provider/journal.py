"""A provider actor's delivery journal: what it knows of each keyed send.

Before the adapter is called for a keyed, non-idempotent request, the entry
says `started`; after, `delivered` (with the value), `failed` (the provider
certainly did not act) or `unknown` (it may have). An entry left `started`
by a process that died, or `unknown`, is settled: the adapter's
`reconcile()` where the provider can be asked, a resend where the provider
itself drops duplicates, and otherwise it stays unknown for an operator.

Two claims keep a key from being sent twice, both here. Keys being sent or
settled right now by this process are held in `Claims` (taken
synchronously, before any await, so a second request for the key waits for
the first). And `DeliveryJournal.claim` writes `started` only where the
store has no entry for the key or one that failed, in one statement the
database decides: a process that is not this one (the provider actor's next
incarnation, racing a request its predecessor had not finished) can never
claim the same send.

Entries are stamped with the provider's wall clock; the outcome writer's
pauses while the store is down are the same clock's sleep.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from actors.clock import SYSTEM_CLOCK, Clock
from actors.durable import JournalEntry, StateStore, StoreUnavailable
from actors.durable.store import SpendDelta
from actors.messages import CallContext, CallReply

log = logging.getLogger("aicmo.provider")

Row = tuple[CallContext, str, str, Any, "str | None"]  # (ctx, method, state, value, error)


class Claims:
    """The keys this process is sending or settling right now, each with
    the future its outcome is given to: whoever else wants the key waits
    for it instead of sending too."""

    UNSENT_KEPT = 10_000  # keys remembered as "not sent" (the oldest forgotten first)

    def __init__(self) -> None:
        self.inflight: dict[str, asyncio.Future[CallReply]] = {}
        # Keys whose last claim here ended before anything was sent (cut off
        # while claiming, or refused by the journal): a router that asks about
        # the attempt it just made is answered "not delivered" without the store.
        self._unsent: dict[str, None] = {}

    def take(self, keys: list[str]) -> dict[str, asyncio.Future[CallReply]]:
        """Marks the keys in flight: synchronous, so nothing else in this
        process can check them in between."""
        loop = asyncio.get_running_loop()
        claims: dict[str, asyncio.Future[CallReply]] = {key: loop.create_future() for key in keys}
        self.inflight.update(claims)
        for key in keys:
            self._unsent.pop(key, None)
        return claims

    async def wait_for(self, key: str) -> CallReply | None:
        """Waits until nobody in this process is sending or settling `key` (a
        claim that ends can be followed by another before this task wakes),
        and returns the outcome of the last claim it waited for. A claim made
        right after this returns, without yielding, is current."""
        last: CallReply | None = None
        while (claim := self.inflight.get(key)) is not None:
            last = await asyncio.shield(claim)
        return last

    def release(self, claims: dict[str, asyncio.Future[CallReply]], outcomes: dict[str, CallReply],
                otherwise: CallReply) -> None:
        """Ends the claims; whoever waited on a key gets its outcome."""
        for key, future in claims.items():
            if self.inflight.get(key) is future:
                del self.inflight[key]
            if not future.done():
                future.set_result(outcomes.get(key, otherwise))

    def release_unsent(self, claims: dict[str, asyncio.Future[CallReply]], reply: CallReply) -> None:
        """Ends claims whose sends were certainly not made (`reply` says
        why), and remembers so (`unsent`)."""
        for key, future in claims.items():
            if not future.done():  # still the key's current claim
                self._unsent[key] = None
        while len(self._unsent) > self.UNSENT_KEPT:
            del self._unsent[next(iter(self._unsent))]
        self.release(claims, {}, reply)

    def unsent(self, key: str) -> bool:
        """Whether the last claim of `key` here ended with nothing sent."""
        return key in self._unsent and key not in self.inflight


class DeliveryJournal:
    def __init__(self, capability: str, provider: str, store: Callable[[], StateStore], clock: Clock = SYSTEM_CLOCK):
        self.capability = capability
        self.provider = provider
        self._store = store
        self._clock = clock
        self.incarnation = uuid.uuid4().hex  # this process: entries of another one were left by a crash

    def _entry(self, ctx: CallContext, method: str, state: str, value: Any = None,
               error: str | None = None) -> JournalEntry:
        assert ctx.idempotency_key is not None
        return JournalEntry(capability=self.capability, provider=self.provider, key=ctx.idempotency_key,
                            request_id=ctx.request_id, method=method, state=state,  # type: ignore[arg-type]
                            incarnation=self.incarnation, updated_at=self._clock.time(), value=value, error=error)

    async def claim(self, calls: Sequence[tuple[CallContext, str]]) -> dict[str, JournalEntry]:
        """Journals each (ctx, method) `started` where the send is free to be
        made; returns the entries of the keys that are not (delivered, in
        doubt, or being sent by another process)."""
        return await self._store().journal_claim([self._entry(ctx, method, "started") for ctx, method in calls])

    async def get(self, key: str) -> JournalEntry | None:
        found = await self._store().journal_find_many(self.capability, [key], provider=self.provider)
        return found[key][0] if key in found else None

    def entries(self, rows: Sequence[Row]) -> list[JournalEntry]:
        return [self._entry(*row) for row in rows]

    async def write_many(self, rows: Sequence[Row]) -> None:
        """(ctx, method, state, value, error) rows, in one statement."""
        await self.put(self.entries(rows))

    async def put(self, entries: Sequence[JournalEntry], spend: Sequence[SpendDelta] = ()) -> None:
        """The entries, with what their sends cost (one transaction) when there is any."""
        if spend:
            await self._store().journal_put_many(entries, spend)
        else:
            await self._store().journal_put_many(entries)


class HeldCharges(Protocol):
    """What keyed sends cost, held until their outcomes are written (spending.py's Spending)."""

    def take(self, keys: list[str]) -> list[SpendDelta]: ...
    def give_back(self, deltas: list[SpendDelta]) -> None: ...


class OutcomeWriter:
    """Journals what happened to sends. A send has happened whatever the
    store says: when it does not answer, the entries are kept here and
    written as soon as it does (in the background, oldest first), and a key
    delivered meanwhile is answered from `delivered`, never sent again."""

    RETRY_FIRST_S = 0.1
    RETRY_LONGEST_S = 5.0

    def __init__(self, journal: DeliveryJournal, clock: Clock = SYSTEM_CLOCK, charges: HeldCharges | None = None):
        """`charges`: the sends' held charges, written in the outcomes'
        statement when it is written at once (else back to their flush)."""
        self._journal = journal
        self._clock = clock
        self._charges = charges
        self.delivered: dict[str, Any] = {}   # key -> the reply of a delivery not journaled yet
        self._unwritten: list[JournalEntry] = []
        self._flushing: asyncio.Task[None] | None = None

    @property
    def backlog(self) -> int:
        return len(self._unwritten)

    async def write(self, rows: Sequence[Row], replies: dict[str, Any]) -> None:
        entries = self._journal.entries(rows)
        if not entries:
            return
        delivered = {key: reply for key, reply in replies.items() if getattr(reply, "ok", False)}
        spend = self._charges.take([e.key for e in entries]) if self._charges is not None else []
        if self._unwritten:  # behind older entries: written in order
            self._give_back(spend)
            self._later(entries, delivered)
            return
        # In memory before the store is awaited: a cancel meanwhile (the
        # router gave up on the attempt) must not lose what was delivered.
        self.delivered.update(delivered)
        try:
            await self._journal.put(entries, spend)
        except StoreUnavailable as exc:
            log.warning("%s/%s: journaling %d outcome(s) later: %s", self._journal.capability,
                        self._journal.provider, len(entries), exc)
            self._give_back(spend)
            self._later(entries, delivered)
            return
        except asyncio.CancelledError:
            # Perhaps written: charging twice is the quota's safe side. The entries are written
            # again in the background (a put of the same entries is harmless).
            self._give_back(spend)
            self._later(entries, delivered)
            raise
        queued = {entry.key for entry in self._unwritten}
        for key in delivered:
            if key not in queued:
                self.delivered.pop(key, None)

    def _give_back(self, spend: Any) -> None:
        """Charges not written with their outcomes go back to the once-a-second spend flush."""
        if self._charges is not None:
            self._charges.give_back(spend)

    def _later(self, entries: Sequence[JournalEntry], delivered: dict[str, Any]) -> None:
        self._unwritten += entries
        self.delivered.update(delivered)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        pause = self.RETRY_FIRST_S
        while self._unwritten:
            batch = list(self._unwritten)
            try:
                await self._journal.put(batch)
            except StoreUnavailable:
                await self._clock.sleep(pause)
                pause = min(pause * 2, self.RETRY_LONGEST_S)
                continue
            del self._unwritten[:len(batch)]
            for entry in batch:
                self.delivered.pop(entry.key, None)
