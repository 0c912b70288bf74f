"""Gathering the calls made in one turn of the event loop into one.

`invoke_many` starts all its requests at once; their first steps (claiming
their keys, reading the journal, the first attempt) reach the same places
within one turn of the event loop. `PerTurn` gathers what arrives in that
turn and hands it over as one list, so a batch of a hundred costs one
statement or one Ray call instead of a hundred. Later steps (fallbacks,
results of slower attempts) form batches of their own.

`Coalescer` uses it to send the attempts of a batch to each provider in one
`call_many`; the router uses it for its store statements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from actors.errors import ActorUnreachable, ErrorKind, WrongReplyCount
from actors.messages import CallContext, CallReply

# Set by invoke_many for the requests it starts: their sends are coalesced.
batching: ContextVar[bool] = ContextVar("aicmo_batching", default=False)

Call = tuple[str, Any, CallContext]
SendMany = Callable[[str, list[Call]], Awaitable[list[CallReply]]]

I = TypeVar("I")
R = TypeVar("R")



class PerTurn(Generic[I, R]):
    """`await batch(item)` returns `flush(items)[i]` for the item, where
    `items` is everything submitted in the same turn of the event loop."""

    def __init__(self, flush: Callable[[list[I]], Awaitable[list[R]]]):
        self._flush = flush
        self._pending: list[tuple[I, asyncio.Future[R]]] | None = None

    async def __call__(self, item: I) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if self._pending is None:
            self._pending = []
            # Runs after every task already scheduled: the rest of the batch
            # reaches this point first.
            loop.call_soon(self._start)
        self._pending.append((item, future))
        return await future

    def _start(self) -> None:
        batch, self._pending = self._pending or [], None
        if batch:
            asyncio.ensure_future(self._deliver(batch))

    async def _deliver(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            replies = await self._flush([item for item, _ in batch])
            if len(replies) != len(batch):
                # Which reply belongs to which item is lost, and a caller left
                # without one would wait forever: every item fails.
                raise WrongReplyCount(len(batch), len(replies))
        except BaseException as exc:  # noqa: BLE001 - every caller in the batch gets it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)


class Coalescer:
    """A provider's share of a batch, sent as one `call_many`."""

    def __init__(self, send_many: SendMany):
        self._send_many = send_many
        self._per_provider: dict[str, PerTurn[Call, CallReply]] = {}

    async def send(self, name: str, method: str, payload: Any, ctx: CallContext) -> CallReply:
        batch = self._per_provider.get(name)
        if batch is None:
            batch = self._per_provider[name] = PerTurn(lambda calls, name=name: self._deliver(name, calls))
        return await batch((method, payload, ctx))

    async def _deliver(self, name: str, calls: list[Call]) -> list[CallReply]:
        replies = await self._send_many(name, calls)
        if len(replies) != len(calls):
            # Every call's outcome is unknown: the router settles each key
            # from the provider's journal, and sends nothing twice.
            raise ActorUnreachable(ErrorKind.MALFORMED_RESPONSE, f"{name}: answered a batch of {len(calls)} "
                                   f"calls with {len(replies)} replies", maybe_delivered=True)
        return replies
