"""One round of sends with the delivery journal around it: what keyed sends
(keyed_sends.py) and settling (settling.py) both stand on.

    JournaledSend.send(calls, claims) --> [journal `started` first, if asked]
                                          attempts, run together (ProviderCore's attempt)
                                          their outcomes journaled in one statement
                                          the claims released with them

A send cut off (cancelled, the process going down) may have gone out: it is
journaled `unknown`, and whoever waited on its key is answered so.
`Answers` are the replies a keyed send gives without an attempt of its own
(answered from the journal, cut off, settled), with the provider's health
as it is now, as every reply carries it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from actors.errors import ErrorKind
from actors.messages import CallContext, CallReply, Resolution
from actors.payloads import Payload
from actors.policy.health import HealthSnapshot
from actors.provider.journal import Claims, DeliveryJournal, OutcomeWriter

__all__ = ["Answers", "Attempt", "Call", "JournaledSend", "journals"]

Call = tuple[str, Payload, CallContext]
Attempt = Callable[[str, Payload, CallContext], Awaitable[CallReply]]


def journals(ctx: CallContext) -> bool:
    """Whether a call goes through the journal: a keyed send that is not a dry run."""
    return bool(ctx.journal and ctx.idempotency_key and not ctx.dry_run)


def _state(reply: CallReply) -> str:
    """A keyed send's journal state once its attempt has answered."""
    return "delivered" if reply.ok else ("unknown" if reply.maybe_delivered else "failed")


class Answers:
    """Replies made without an attempt, carrying the provider's current health."""

    def __init__(self, name: str, health: Callable[[], HealthSnapshot]):
        self.name = name
        self._health = health

    def delivered(self, value: Any) -> CallReply:
        """A delivery learnt by settling (the provider confirmed it)."""
        return CallReply(ok=True, value=value, health=self._health())

    def replayed(self, value: Any) -> CallReply:
        """The answer for a key delivered earlier: its value, nothing sent again."""
        return CallReply(ok=True, value=value, replayed=True, health=self._health())

    def cut_off(self) -> CallReply:
        return CallReply(ok=False, error_kind=ErrorKind.OUTCOME_UNKNOWN, maybe_delivered=True,
                         error=f"{self.name}: the attempt was cut off", health=self._health())

    def not_sent(self, why: str) -> CallReply:
        """A keyed send stopped before the adapter was called: certainly not delivered."""
        return CallReply(ok=False, error_kind=ErrorKind.CANCELLED, maybe_delivered=False,
                         error=f"{self.name}: {why}", health=self._health())

    def settled(self, settled: Resolution) -> CallReply:
        """What a keyed send answers once its key's earlier send is settled."""
        if settled.state == "delivered":
            return self.replayed(settled.value)
        if settled.state == "unknown":
            return CallReply(ok=False, error_kind=ErrorKind.OUTCOME_UNKNOWN, maybe_delivered=True,
                             error=f"{self.name}: an earlier send of this request may have been delivered "
                                   f"({settled.error}); not sending it again", health=self._health())
        return CallReply(ok=False, error=f"{self.name}: settled: not delivered", health=self._health())

    def refused(self, error: str) -> CallReply:
        """Not sent: the journal could not be written (not the provider's fault)."""
        return CallReply(ok=False, error_kind=ErrorKind.STORE_UNAVAILABLE, health=self._health(), error=error)


class JournaledSend:
    def __init__(self, attempt: Attempt, journal: DeliveryJournal, outcomes: OutcomeWriter, claims: Claims,
                 answers: Answers):
        self._attempt = attempt
        self._journal = journal
        self._outcomes = outcomes
        self._claims = claims
        self._answers = answers

    async def send(self, calls: list[Call], claims: dict[str, asyncio.Future[CallReply]],
                   journal_first: bool = False) -> list[CallReply]:
        """Sends now: every keyed send among `calls` is claimed here and
        journaled `started` (or, with `journal_first`, is journaled so now,
        its key's claim held by the caller). Outcomes are journaled after,
        in one statement, and `claims` released with them."""
        keyed = [(method, ctx) for method, _, ctx in calls if journals(ctx)]
        if journal_first and keyed:
            await self._journal.write_many([(ctx, method, "started", None, None) for method, ctx in keyed])
        if not keyed:
            return list(await asyncio.gather(*(self._attempt(method, payload, ctx) for method, payload, ctx in calls)))
        outcomes: dict[str, CallReply] = {}
        tasks = [asyncio.ensure_future(self._attempt(method, payload, ctx)) for method, payload, ctx in calls]
        try:
            replies = list(await asyncio.gather(*tasks))
            for (_, _, ctx), reply in zip(calls, replies, strict=True):
                if journals(ctx):
                    outcomes[ctx.idempotency_key] = reply  # type: ignore[index]
            return replies
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
        finally:
            try:
                # A send cut off (cancelled, or the process going down) may have gone out.
                await self._outcomes.write([
                    (ctx, method, _state(r), r.value, r.error) if (r := outcomes.get(ctx.idempotency_key)) else  # type: ignore[arg-type]
                    (ctx, method, "unknown", None, "cut off mid-send") for method, ctx in keyed], outcomes)
            finally:
                self._claims.release(claims, outcomes, self._answers.cut_off())
