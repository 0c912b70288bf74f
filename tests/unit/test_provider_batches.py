"""A provider's batch of keyed sends (ProviderCore.call_many), without Ray:
one journal statement claims the batch and one journals its outcomes, keys
claimed in memory before anything awaits, keys that must wait handled on
their own, and a journal that cannot be written sends nothing.

The order of events is set by the test, never by sleeping: a reconcile
holds until the test lets it go, and the provider's clock is a virtual one
(its pauses while the store does not answer take no real time)."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.durable import JournalEntry, StoreUnavailable
from actors.durable.sqlite import SqliteStore
from actors.errors import ErrorKind
from actors.messages import CallContext
from actors.payloads import SendEmail
from actors.provider.core import ProviderCore
from tests.unit.fakes import Clock, ScriptedAdapter, capability_spec, until
from tests.unit.harness import EMAIL

PAYLOAD = SendEmail(**EMAIL)


class CountingStore:
    """A SqliteStore that counts the journal calls made on it, and can be
    made to fail its writes as a locked or unreachable store does."""

    def __init__(self) -> None:
        self.inner = SqliteStore(":memory:")
        self.counts: dict[str, int] = {}
        self.fail_writes = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not name.startswith("journal"):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] = self.counts.get(name, 0) + 1
            if self.fail_writes and name in ("journal_put_many", "journal_claim"):
                raise StoreUnavailable(self.inner.url, "database is locked")
            return await attr(*args, **kwargs)

        return counted


def left_by_a_crash(store: Any, key: str, state: str = "started") -> None:
    """A journal entry another process of this provider wrote, and died."""
    asyncio.run(store.journal_put_many([JournalEntry(
        capability="email_sending", provider="a", key=key, request_id="r0", method="send_email", state=state,
        incarnation="dead", updated_at=900.0)]))


def entry_of(store: Any, key: str) -> JournalEntry:
    return asyncio.run(store.journal_find_many("email_sending", [key], provider="a"))[key][0]


def provider(script: list[Any], store: Any, clock: Clock | None = None) -> tuple[ProviderCore, ScriptedAdapter]:
    adapter = ScriptedAdapter(script)
    core = ProviderCore(capability_spec(["a"]).providers[0], adapter, clock=clock or Clock(virtual=True), store=store)
    return core, adapter


def ctx(key: str, timeout_s: float = 10.0) -> CallContext:
    return CallContext(request_id=f"r-{key}", method="send_email", idempotency_key=key, journal=True,
                       timeout_s=timeout_s)


def batch(keys: list[str], timeout_s: float = 10.0) -> list[tuple[str, Any, CallContext]]:
    return [("send_email", PAYLOAD, ctx(k, timeout_s)) for k in keys]


def test_a_batch_claims_the_journal_in_one_statement_and_journals_its_outcomes_in_one() -> None:
    store = CountingStore()
    core, adapter = provider([], store)
    replies = asyncio.run(core.call_many(batch([f"k{i}" for i in range(50)])))
    assert all(r.ok and not r.replayed for r in replies) and len(adapter.calls) == 50
    assert store.counts == {"journal_claim": 1, "journal_put_many": 1}
    assert entry_of(store.inner, "k7").state == "delivered"

    again = asyncio.run(core.call_many(batch(["k3", "k3", "new"])))
    assert [r.replayed for r in again] == [True, True, False] and len(adapter.calls) == 51


def test_a_key_being_settled_does_not_hold_up_the_rest_of_the_batch() -> None:
    store = CountingStore()
    core, adapter = provider([], store)
    left_by_a_crash(store.inner, "crashed")
    settled = asyncio.Event()  # set by the test: the reconcile answers only then
    order: list[str] = []

    async def reconcile(method: str, payload: Any, c: CallContext) -> None:
        order.append("settling")
        await settled.wait()
        order.append("settled")
        return None  # the provider never got it

    adapter.reconcile = reconcile  # type: ignore[method-assign]

    async def run() -> list[Any]:
        task = asyncio.ensure_future(core.call_many(batch(["crashed", "fresh"])))
        # Held here until "fresh" has gone out: it never would if the settling held up the batch.
        await until(lambda: "settling" in order and len(adapter.calls) == 1 or task.done())
        order.append(f"sent {[c.idempotency_key for _, _, c in adapter.calls]}")
        settled.set()
        return await task

    replies = asyncio.run(run())
    assert order == ["settling", "sent ['fresh']", "settled"]  # "fresh" went out while "crashed" was being settled
    assert all(r.ok for r in replies) and [c.idempotency_key for _, _, c in adapter.calls] == ["fresh", "crashed"]


def test_concurrent_sends_of_a_key_a_crash_left_started_reach_the_provider_once() -> None:
    store = SqliteStore(":memory:")
    core, adapter = provider([], store)
    left_by_a_crash(store, "k")
    asked: list[str] = []
    answer = asyncio.Event()  # the first settlement answers once both requests are under way

    async def reconcile(method: str, payload: Any, c: CallContext) -> None:
        asked.append(c.request_id)
        await answer.wait()
        return None  # the provider never got it

    adapter.reconcile = reconcile  # type: ignore[method-assign]

    async def both() -> list[Any]:
        first = asyncio.ensure_future(core.call_many(batch(["k"])))
        second = asyncio.ensure_future(core.call_many(batch(["k"])))
        await until(lambda: len(asked) >= 1)
        answer.set()
        return [*(await first), *(await second)]

    first, second = asyncio.run(both())
    assert first.ok and second.ok and second.value == first.value
    assert len(adapter.calls) == 1 and len(asked) == 1  # the second waited for the first's settlement and send
    assert entry_of(store, "k").state == "delivered" and core.claims.inflight == {}


def test_resolve_waits_for_a_settlement_in_progress() -> None:
    store = SqliteStore(":memory:")
    core, adapter = provider([], store)
    left_by_a_crash(store, "k", "unknown")
    asked: list[str] = []

    found = asyncio.Event()  # the settlement answers once the router's question is under way too

    async def reconcile(method: str, payload: Any, c: CallContext) -> Any:
        asked.append(c.request_id)
        await found.wait()
        return {"message_id": "found"}

    adapter.reconcile = reconcile  # type: ignore[method-assign]

    async def both() -> list[Any]:
        sends = asyncio.ensure_future(core.call_many(batch(["k"])))
        question = asyncio.ensure_future(core.resolve("send_email", PAYLOAD, ctx("k")))
        await until(lambda: len(asked) >= 1)
        found.set()
        return [await sends, await question]

    [reply], resolution = asyncio.run(both())
    assert reply.ok and reply.replayed and reply.value == {"message_id": "found"}
    assert resolution.state == "delivered" and resolution.value == {"message_id": "found"}
    assert len(asked) == 1 and adapter.calls == []


def test_a_journal_that_cannot_be_written_sends_nothing_and_keeps_no_claim() -> None:
    store = CountingStore()
    clock = Clock(virtual=True)
    core, adapter = provider([], store, clock)
    store.fail_writes = True
    replies = asyncio.run(core.call_many(batch(["k1", "k2"], timeout_s=3.0)))
    assert [r.error_kind for r in replies] == [ErrorKind.STORE_UNAVAILABLE] * 2
    assert not any(r.maybe_delivered for r in replies) and "journal could not be written" in replies[0].error
    # It waited for the store within the attempt's time, on the provider's clock, and no longer.
    assert store.counts["journal_claim"] == len(clock.slept) + 1 > 2 and 1.0 < sum(clock.slept) < 3.0
    assert adapter.calls == [] and core.claims.inflight == {}
    assert core.health.total_calls == 0  # not the provider's fault

    store.fail_writes = False
    [reply] = asyncio.run(core.call_many(batch(["k1"])))
    assert reply.ok and len(adapter.calls) == 1


def test_outcome_unknown_is_not_sent_again_in_a_batch() -> None:
    store = SqliteStore(":memory:")
    core, adapter = provider([], store)
    left_by_a_crash(store, "doubt", "unknown")  # no reconcile on this adapter, no dedupe at the provider
    replies = asyncio.run(core.call_many(batch(["doubt", "fine"])))
    assert replies[0].error_kind is ErrorKind.OUTCOME_UNKNOWN and replies[0].maybe_delivered
    assert replies[1].ok and [c.idempotency_key for _, _, c in adapter.calls] == ["fine"]
