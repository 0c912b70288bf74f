"""A batch of calls of which some are keyed, non-idempotent sends
(`ctx.journal`): each key reaches the provider at most once, whoever asks.

    call_many --> keys claimed in memory (journal.Claims), before any await
                  the batch's keys claimed in the journal, in one statement
                  free ones sent together with the unkeyed calls (journaled_send.py)
                  delivered already: answered from the journal, nothing sent
                  left `started` or `unknown` by a crash: settled first (settling.py)
                  being sent by another request of this process: waited for

None of the keys that must wait holds up the rest of the batch. If the
journal cannot be written within the attempts' time, those sends are not
made: they are answered `store_unavailable`.
"""

from __future__ import annotations

import asyncio

import msgspec

from actors.clock import SYSTEM_CLOCK, Clock
from actors.durable import JournalEntry, StoreUnavailable
from actors.durable.retry import within
from actors.messages import CallContext, CallReply, Resolution
from actors.payloads import Payload
from actors.provider.journal import Claims, DeliveryJournal, OutcomeWriter
from actors.provider.journaled_send import Answers, Call, JournaledSend, journals
from actors.provider.settling import Settling
from actors.redaction import Redactor

__all__ = ["KeyedSends"]

Claimed = dict[str, asyncio.Future[CallReply]]

CLAIM_MARGIN_S = 0.25  # the journal claim ends this much before the attempt's timeout (at most half of it)


class KeyedSends:
    def __init__(self, name: str, sender: JournaledSend, settling: Settling, journal: DeliveryJournal,
                 outcomes: OutcomeWriter, claims: Claims, answers: Answers, redact: Redactor,
                 clock: Clock = SYSTEM_CLOCK):
        self.name = name
        self._sender = sender
        self._settling = settling
        self._journal = journal
        self._outcomes = outcomes
        self._claims = claims
        self._answers = answers
        self._redact = redact
        self._clock = clock

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
            if key is None or not journals(ctx):
                direct.append(i)
            elif key in first_of_key:  # the same request twice in one batch: sent once
                same_as[i] = first_of_key[key]
            else:
                first_of_key[key] = i
                (busy.append(i) if key in self._claims.inflight else mine.__setitem__(key, i))
        claims = self._claims.take(list(mine))
        others = [asyncio.ensure_future(self._call_when_free(*calls[i])) for i in busy]
        settling: dict[int, asyncio.Future[CallReply]] = {}
        sending = False
        try:
            taken = await self._claim_in_journal([calls[i] for i in mine.values()], claims, replies, mine)
            for key, entry in taken.items():
                i = mine.pop(key)
                settling[i] = asyncio.ensure_future(self._answer_taken(*calls[i], entry, claims.pop(key)))
            now = [*direct, *mine.values()]
            sending = True
            sent = await self._sender.send([calls[i] for i in now], {key: claims[key] for key in mine})
            for i, reply in zip(now, sent, strict=True):
                replies[i] = reply
            for i, reply in zip([*settling, *busy], await asyncio.gather(*settling.values(), *others), strict=True):
                replies[i] = reply
        except BaseException:
            for task in [*others, *settling.values()]:
                task.cancel()
            if sending:
                self._claims.release(claims, {}, self._answers.cut_off())
            else:  # cut off while claiming: the adapter was never called
                self._claims.release_unsent(claims, self._answers.not_sent("cut off before it was sent"))
            raise
        for i, j in same_as.items():
            replies[i] = replies[j]
        return replies  # type: ignore[return-value] - every slot is filled above

    async def _claim_in_journal(self, calls: list[Call], claims: Claimed, replies: list[CallReply | None],
                                mine: dict[str, int]) -> dict[str, JournalEntry]:
        """Journals the sends `started` where they are free to be made, and
        returns the entries of the keys that are not. If the store does not
        answer within the attempts' time, nothing is sent: those calls are
        answered `store_unavailable` and their claims released."""
        if not calls:
            return {}
        # The whole claim is bounded, not each try: one try during an outage
        # lasts as long as the store's own wait, and the answer must reach
        # the router before it gives up on the attempt (timeout_s + its grace).
        timeout_s = max(ctx.timeout_s for _, _, ctx in calls)
        claim_s = timeout_s - min(CLAIM_MARGIN_S, timeout_s / 2)
        deadline = self._clock.monotonic() + claim_s
        pending = {ctx.idempotency_key: (ctx, method) for method, _, ctx in calls if ctx.idempotency_key in
                   self._outcomes.delivered}
        if pending:  # delivered here, its outcome not journaled yet (the store was down): answer from memory
            for key in pending:
                i = mine.pop(key)  # type: ignore[arg-type]
                replies[i] = self._answers.replayed(self._outcomes.delivered[key].value)  # type: ignore[index]
                self._claims.release({key: claims.pop(key)}, {key: replies[i]}, replies[i])  # type: ignore[arg-type, dict-item]
            calls = [c for c in calls if c[2].idempotency_key not in pending]
        try:
            return await asyncio.wait_for(
                within(deadline, lambda: self._journal.claim([(ctx, method) for method, _, ctx in calls]),
                       sleep=self._clock.sleep, clock=self._clock.monotonic), claim_s)
        except (StoreUnavailable, asyncio.TimeoutError) as exc:
            why = exc if isinstance(exc, StoreUnavailable) else f"no answer within {claim_s:g}s"
            refused = self._answers.refused(self._redact(f"{self.name}: not sent: the delivery journal could not "
                                                         f"be written ({why})"))
            for _, _, ctx in calls:
                key = ctx.idempotency_key
                replies[mine.pop(key)] = refused  # type: ignore[arg-type]
                self._claims.release_unsent({key: claims.pop(key)}, refused)  # type: ignore[arg-type]
            return {}

    async def _answer_taken(self, method: str, payload: Payload, ctx: CallContext, entry: JournalEntry,
                            claim: asyncio.Future[CallReply]) -> CallReply:
        """A keyed send whose journal entry says it is not simply free, with
        its key claimed here: delivered already, or settled first."""
        reply = self._answers.cut_off()
        try:
            for _ in range(3):  # settled "not delivered", then taken again by another process: look again
                if entry.state == "delivered":
                    reply = self._answers.replayed(entry.value)
                    return reply
                if entry.state == "failed":
                    [reply] = await self._sender.send([(method, payload, ctx)], {}, journal_first=True)
                    return reply
                settled = await self._settling.settle_claimed(method, payload, ctx)
                if settled.state != "not_delivered":
                    reply = self._answers.settled(settled)
                    return reply
                entry = msgspec.structs.replace(entry, state="failed")
            reply = self._answers.settled(Resolution(state="unknown", error="its journal entry kept changing"))
            return reply
        finally:
            self._claims.release({ctx.idempotency_key: claim}, {ctx.idempotency_key: reply}, reply)  # type: ignore[dict-item]

    async def _call_when_free(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        """A keyed send another request of this process is sending or
        settling right now: its outcome answers this one too if it delivered
        (or may have); otherwise this one goes through the journal itself."""
        key = ctx.idempotency_key
        assert key is not None
        first = await self._claims.wait_for(key)
        if first is not None and (first.ok or first.maybe_delivered):
            return first if not first.ok else self._answers.replayed(first.value)
        return (await self.call_many([(method, payload, ctx)]))[0]
