"""Keyed sends while the state store is down (docs/head-node.md, section 6),
without Ray: a provider that never reached the adapter knows nothing was
sent and says so; one that delivered never forgets it.

The store's journal calls fail after a fixed wait, as a PostgreSQL pool's
wait for a connection does during an outage; the router is played by a
wait of `timeout_s + ACTOR_GRACE_S` and a cancel, as RouterActor does with
`ray.cancel`. Everything runs on a virtual clock (virtual_time.py): the
seconds are the loop's, decided by the timers, never by the machine."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.durable import JournalEntry, StoreUnavailable
from actors.errors import ErrorKind
from actors.messages import CallContext, CallReply, Resolution
from actors.payloads import SendEmail
from actors.provider.core import ProviderCore
from actors.router.provider_calls import ACTOR_GRACE_S
from tests.unit import virtual_time
from tests.unit.fakes import ScriptedAdapter, capability_spec, until
from tests.unit.harness import EMAIL

PAYLOAD = SendEmail(**EMAIL)
POOL_WAIT_S = 2.0  # PostgresStore: pool.connection(timeout=2 s)


class OutageStore:
    """A journal in memory (no thread: the clock is virtual) whose calls,
    while `down`, fail after POOL_WAIT_S."""

    url = "postgresql://db/gateway"

    def __init__(self) -> None:
        self.rows: dict[str, JournalEntry] = {}
        self.down = False

    async def _reach(self) -> None:
        if self.down:
            await asyncio.sleep(POOL_WAIT_S)
            raise StoreUnavailable(self.url, f"no connection within {POOL_WAIT_S:g}s")

    async def journal_claim(self, entries: list[JournalEntry]) -> dict[str, JournalEntry]:
        await self._reach()
        taken = {e.key: self.rows[e.key] for e in entries if e.key in self.rows and self.rows[e.key].state != "failed"}
        self.rows.update({e.key: e for e in entries if e.key not in taken})
        return taken

    async def journal_put_many(self, entries: list[JournalEntry]) -> None:
        await self._reach()
        self.rows.update({e.key: e for e in entries})

    async def journal_find_many(self, capability: str, keys: list[str],
                                provider: str | None = None) -> dict[str, list[JournalEntry]]:
        await self._reach()
        return {k: [self.rows[k]] for k in keys if k in self.rows}


def provider(store: OutageStore, script: list[Any] | None = None) -> tuple[ProviderCore, ScriptedAdapter]:
    adapter = ScriptedAdapter(script or [])
    core = ProviderCore(capability_spec(["a"]).providers[0], adapter, clock=virtual_time.loop_clock(), store=store)
    return core, adapter


def ctx(key: str, timeout_s: float) -> CallContext:
    return CallContext(request_id=f"r-{key}", method="send_email", idempotency_key=key, journal=True,
                       timeout_s=timeout_s)


async def as_a_router(core: ProviderCore, c: CallContext) -> CallReply | Resolution:
    """The reply, or, when the provider did not answer within the
    router's wait (it is cancelled then), what `resolve` says of it."""
    task = asyncio.ensure_future(core.call_many([("send_email", PAYLOAD, c)]))
    done, _ = await asyncio.wait({task}, timeout=c.timeout_s + ACTOR_GRACE_S)
    if done:
        return task.result()[0]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return await core.resolve("send_email", PAYLOAD, c)


@pytest.mark.parametrize("timeout_s", [1.5, 2.5, 3.0, 3.5, 4.5])
def test_a_journal_claim_that_outlasts_the_attempt_answers_store_unavailable_before_the_router_gives_up(
        timeout_s: float) -> None:
    async def main() -> tuple[Any, float, int]:
        store = OutageStore()
        store.down = True
        core, adapter = provider(store)
        started = asyncio.get_running_loop().time()
        answer = await as_a_router(core, ctx("k", timeout_s))
        return answer, asyncio.get_running_loop().time() - started, len(adapter.calls)

    answer, took_s, sent = virtual_time.run(main())
    assert isinstance(answer, CallReply), f"the router gave up and asked: {answer}"
    assert answer.error_kind == ErrorKind.STORE_UNAVAILABLE and not answer.maybe_delivered
    assert took_s < timeout_s + ACTOR_GRACE_S and sent == 0


def test_a_send_cancelled_while_claiming_is_resolved_not_delivered_with_the_store_down() -> None:
    async def main() -> tuple[Resolution, int]:
        store = OutageStore()
        store.down = True
        core, adapter = provider(store)
        c = ctx("k", 10.0)
        task = asyncio.ensure_future(core.call_many([("send_email", PAYLOAD, c)]))
        await asyncio.sleep(POOL_WAIT_S * 1.5)  # in its second try at the journal
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return await core.resolve("send_email", PAYLOAD, c), len(adapter.calls)

    resolution, sent = virtual_time.run(main())
    assert resolution.state == "not_delivered" and sent == 0


def test_a_send_the_journal_refused_is_resolved_not_delivered_with_the_store_down() -> None:
    async def main() -> tuple[CallReply, Resolution, int]:
        store = OutageStore()
        store.down = True
        core, adapter = provider(store)
        c = ctx("k", 3.0)
        [reply] = await core.call_many([("send_email", PAYLOAD, c)])
        # The router lost that reply (its actor restarted, say) and asks.
        return reply, await core.resolve("send_email", PAYLOAD, c), len(adapter.calls)

    reply, resolution, sent = virtual_time.run(main())
    assert reply.error_kind == ErrorKind.STORE_UNAVAILABLE
    assert resolution.state == "not_delivered" and sent == 0


def test_a_delivery_cut_off_while_its_outcome_is_journaled_is_kept_and_journaled_once_the_store_returns() -> None:
    async def main() -> tuple[Resolution, CallReply, OutageStore, int]:
        store = OutageStore()

        def deliver_then_lose_the_store() -> dict[str, str]:
            store.down = True
            return {"message_id": "m-1"}

        core, adapter = provider(store, [deliver_then_lose_the_store])
        c = ctx("k", 10.0)
        task = asyncio.ensure_future(core.call_many([("send_email", PAYLOAD, c)]))
        await until(lambda: len(adapter.calls) == 1)
        await asyncio.sleep(POOL_WAIT_S / 2)  # the outcome's write is waiting for the store
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        resolution = await core.resolve("send_email", PAYLOAD, c)  # the store still down
        store.down = False
        await until(lambda: "k" in store.rows and store.rows["k"].state == "delivered")
        [again] = await core.call_many([("send_email", PAYLOAD, c)])
        return resolution, again, store, len(adapter.calls)

    resolution, again, store, sent = virtual_time.run(main())
    assert resolution.state == "delivered" and resolution.value == {"message_id": "m-1"}
    assert store.rows["k"].value == {"message_id": "m-1"}
    assert again.ok and again.replayed and sent == 1
