"""A provider's batch of keyed sends (ProviderCore.call_many), without Ray:
one journal read and two journal transactions per batch, keys claimed in
the same step as their check, keys that must wait handled on their own,
and a journal that cannot be written sends nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from actors.durable.sqlite import SqliteStore
from actors.errors import ErrorKind
from actors.messages import CallContext
from actors.payloads import SendEmail
from actors.runtime.provider import ProviderCore
from tests.unit.fakes import ScriptedAdapter, capability_spec, sleeper
from tests.unit.harness import EMAIL

PAYLOAD = SendEmail(**EMAIL)


class CountingStore:
    """A SqliteStore that counts the journal calls made on it."""

    def __init__(self) -> None:
        self.inner = SqliteStore(":memory:")
        self.counts: dict[str, int] = {}
        self.fail_writes = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not name.startswith("journal"):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] = self.counts.get(name, 0) + 1
            if self.fail_writes and name.startswith("journal_put"):
                raise sqlite3.OperationalError("database is locked")
            return attr(*args, **kwargs)

        return counted


def provider(script: list[Any], store: Any) -> tuple[ProviderCore, ScriptedAdapter]:
    adapter = ScriptedAdapter(script)
    return ProviderCore(capability_spec(["a"]).providers[0], adapter, store=store), adapter


def ctx(key: str) -> CallContext:
    return CallContext(request_id=f"r-{key}", method="send_email", idempotency_key=key, journal=True)


def batch(keys: list[str]) -> list[tuple[str, Any, CallContext]]:
    return [("send_email", PAYLOAD, ctx(k)) for k in keys]


def test_a_batch_reads_the_journal_once_and_writes_it_twice() -> None:
    store = CountingStore()
    core, adapter = provider([], store)
    replies = asyncio.run(core.call_many(batch([f"k{i}" for i in range(50)])))
    assert all(r.ok and not r.replayed for r in replies) and len(adapter.calls) == 50
    assert store.counts == {"journal_find_many": 1, "journal_put_many": 2}
    assert {e.state for e in store.inner.journal_find_many("email_sending", [f"k{i}" for i in range(50)])
            .get("k7", [])} == {"delivered"}

    again = asyncio.run(core.call_many(batch(["k3", "k3", "new"])))
    assert [r.replayed for r in again] == [True, True, False] and len(adapter.calls) == 51


def test_a_key_being_settled_does_not_hold_up_the_rest_of_the_batch() -> None:
    store = CountingStore()
    core, adapter = provider([], store)
    core.journal.write("crashed", "r0", "send_email", "started")  # left by a process that died
    settling = asyncio.Event()
    order: list[str] = []

    async def reconcile(method: str, payload: Any, c: CallContext) -> None:
        settling.set()
        await asyncio.sleep(0.2)
        order.append("settled")
        return None  # the provider never got it

    adapter.reconcile = reconcile  # type: ignore[method-assign]

    async def run() -> list[Any]:
        task = asyncio.ensure_future(core.call_many(batch(["crashed", "fresh"])))
        await settling.wait()
        order.append(f"sent {len(adapter.calls)}")
        return await task

    replies = asyncio.run(run())
    assert order == ["sent 1", "settled"]  # "fresh" went out while "crashed" was being settled
    assert all(r.ok for r in replies) and [c.idempotency_key for _, _, c in adapter.calls] == ["fresh", "crashed"]


def test_concurrent_sends_of_a_key_a_crash_left_started_reach_the_provider_once() -> None:
    core, adapter = provider([sleeper(0.05)], SqliteStore(":memory:"))
    core.journal.write("k", "r0", "send_email", "started")  # left by a process that died
    asked: list[str] = []

    async def reconcile(method: str, payload: Any, c: CallContext) -> None:
        asked.append(c.request_id)
        # A second settlement would answer long after the first had sent: its
        # "not delivered" would then be stale.
        await asyncio.sleep(0.05 if len(asked) == 1 else 0.3)
        return None  # the provider never got it

    adapter.reconcile = reconcile  # type: ignore[method-assign]

    async def both() -> list[Any]:
        first = asyncio.ensure_future(core.call_many(batch(["k"])))
        second = asyncio.ensure_future(core.call_many(batch(["k"])))
        return [*(await first), *(await second)]

    first, second = asyncio.run(both())
    assert first.ok and second.ok and second.value == first.value
    assert len(adapter.calls) == 1 and len(asked) == 1  # the second waited for the first's settlement and send
    assert core.journal.get("k").state == "delivered" and core.journal.inflight == {}


def test_resolve_waits_for_a_settlement_in_progress() -> None:
    core, adapter = provider([], SqliteStore(":memory:"))
    core.journal.write("k", "r0", "send_email", "unknown")
    asked: list[str] = []

    async def reconcile(method: str, payload: Any, c: CallContext) -> Any:
        asked.append(c.request_id)
        await asyncio.sleep(0.05)
        return {"message_id": "found"}

    adapter.reconcile = reconcile  # type: ignore[method-assign]

    async def both() -> list[Any]:
        return list(await asyncio.gather(core.call_many(batch(["k"])), core.resolve("send_email", PAYLOAD, ctx("k"))))

    [reply], resolution = asyncio.run(both())
    assert reply.ok and reply.replayed and reply.value == {"message_id": "found"}
    assert resolution.state == "delivered" and resolution.value == {"message_id": "found"}
    assert len(asked) == 1 and adapter.calls == []


def test_a_journal_that_cannot_be_written_sends_nothing_and_keeps_no_claim() -> None:
    store = CountingStore()
    core, adapter = provider([], store)
    store.fail_writes = True
    try:
        asyncio.run(core.call_many(batch(["k1", "k2"])))
    except sqlite3.OperationalError:
        pass
    else:
        raise AssertionError("the journal error was swallowed")
    assert adapter.calls == [] and core.journal.inflight == {}

    store.fail_writes = False
    [reply] = asyncio.run(core.call_many(batch(["k1"])))
    assert reply.ok and len(adapter.calls) == 1


def test_the_store_reads_many_keys_in_chunks_and_by_provider() -> None:
    from actors.durable.store import JournalEntry

    store = SqliteStore(":memory:")
    keys = [f"k{i}" for i in range(1203)]
    store.journal_put_many([JournalEntry(capability="email_sending", provider=p, key=k, request_id="r", method="send_email",
                                         state="delivered", incarnation="i", updated_at=1.0, value={"k": k})
                            for k in keys for p in ("a", "b")])
    found = store.journal_find_many("email_sending", [*keys, "missing", "k1"])
    assert len(found) == 1203 and "missing" not in found and {e.provider for e in found["k1"]} == {"a", "b"}
    mine = store.journal_find_many("email_sending", keys, provider="b")
    assert len(mine) == 1203 and all([e.provider for e in entries] == ["b"] for entries in mine.values())
    assert mine["k1202"][0].value == {"k": "k1202"}
    assert store.journal_find_many("crm_sync", keys) == {}


def test_outcome_unknown_is_not_sent_again_in_a_batch() -> None:
    core, adapter = provider([], SqliteStore(":memory:"))
    core.journal.write("doubt", "r0", "send_email", "unknown")  # no reconcile on this adapter, no dedupe at the provider
    replies = asyncio.run(core.call_many(batch(["doubt", "fine"])))
    assert replies[0].error_kind is ErrorKind.OUTCOME_UNKNOWN and replies[0].maybe_delivered
    assert replies[1].ok and [c.idempotency_key for _, _, c in adapter.calls] == ["fine"]
