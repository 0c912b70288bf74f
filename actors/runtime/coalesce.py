"""Sending the attempts of a batch to each provider in one Ray call.

`invoke_many` starts all its requests at once; their first attempts reach
the router's send within one turn of the event loop. The coalescer gathers
what is sent to each provider in that turn and delivers it as one
`call_many`, so a batch of a hundred costs one round trip per provider
instead of a hundred. Fallbacks, arriving later, form batches of their own.
The provider runs the calls concurrently and answers each in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from actors.errors import ActorUnreachable, ErrorKind
from actors.messages import CallContext, CallReply

# Set by invoke_many for the requests it starts: their sends are coalesced.
batching: ContextVar[bool] = ContextVar("aicmo_batching", default=False)

Call = tuple[str, Any, CallContext]
SendMany = Callable[[str, list[Call]], Awaitable[list[CallReply]]]


class Coalescer:
    def __init__(self, send_many: SendMany):
        self._send_many = send_many
        self._pending: dict[str, list[tuple[Call, asyncio.Future[CallReply]]]] = {}

    async def send(self, name: str, method: str, payload: Any, ctx: CallContext) -> CallReply:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CallReply] = loop.create_future()
        batch = self._pending.get(name)
        if batch is None:
            batch = self._pending[name] = []
            # Runs after every task already scheduled: the rest of the batch
            # reaches this point first.
            loop.call_soon(self._flush, name)
        batch.append(((method, payload, ctx), future))
        return await future

    def _flush(self, name: str) -> None:
        batch = self._pending.pop(name, [])
        if batch:
            asyncio.ensure_future(self._deliver(name, batch))

    async def _deliver(self, name: str, batch: list[tuple[Call, asyncio.Future[CallReply]]]) -> None:
        try:
            replies = await self._send_many(name, [call for call, _ in batch])
            if len(replies) != len(batch):
                # Which reply belongs to which call is lost, and a caller left
                # without one would wait forever: every call's outcome is unknown.
                raise ActorUnreachable(ErrorKind.MALFORMED_RESPONSE, f"{name}: answered a batch of {len(batch)} "
                                       f"calls with {len(replies)} replies", maybe_delivered=True)
        except BaseException as exc:  # noqa: BLE001 - every caller in the batch gets it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)
