"""The delivery journal on its own (actors/provider/journal.py), without Ray
or a provider core: the claim in the store, the claims in memory, and the
outcome writer that keeps what a store that is down could not take. Time is
a fake clock: entries carry its time, and the writer's pauses take none."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.durable import JournalEntry, StoreUnavailable
from actors.durable.sqlite import SqliteStore
from actors.messages import CallContext, CallReply
from actors.provider.journal import Claims, DeliveryJournal, OutcomeWriter
from tests.unit.fakes import Clock, until


def ctx(key: str) -> CallContext:
    return CallContext(request_id=f"r-{key}", method="send_email", idempotency_key=key, journal=True)


class Flaky:
    """A SqliteStore whose journal writes fail while `down`, as an unreachable store's do."""

    def __init__(self) -> None:
        self.inner = SqliteStore(":memory:")
        self.down = False
        self.puts: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def journal_put_many(self, entries: list[JournalEntry]) -> None:
        if self.down:
            raise StoreUnavailable(self.inner.url, "connection refused")
        self.puts.append([e.key for e in entries])
        await self.inner.journal_put_many(entries)


def journal(store: Any, clock: Clock | None = None) -> DeliveryJournal:
    return DeliveryJournal("email_sending", "p", lambda: store, clock or Clock(1234.5))


# --- the claim in the store -------------------------------------------------------------------------

def test_a_claim_writes_started_where_free_and_returns_the_entries_that_are_not() -> None:
    async def scenario() -> None:
        store = SqliteStore(":memory:")
        j = journal(store)
        assert await j.claim([(ctx("a"), "send_email"), (ctx("b"), "send_email")]) == {}
        entry = await j.get("a")
        assert entry is not None and (entry.state, entry.incarnation, entry.updated_at) == (
            "started", j.incarnation, 1234.5)                              # stamped on the journal's clock
        await j.write_many([(ctx("a"), "send_email", "delivered", {"message_id": "m"}, None),
                            (ctx("b"), "send_email", "failed", None, "refused")])
        # Another process of this provider (a new incarnation) claims again: a failed send is free, a delivered one not.
        taken = await journal(store).claim([(ctx("a"), "send_email"), (ctx("b"), "send_email")])
        assert list(taken) == ["a"] and taken["a"].state == "delivered" and taken["a"].value == {"message_id": "m"}
        assert (await j.get("b")).state == "started" and await j.get("nothing") is None  # type: ignore[union-attr]
        await store.close()

    asyncio.run(scenario())


def test_each_process_is_its_own_incarnation() -> None:
    store = SqliteStore(":memory:")
    assert journal(store).incarnation != journal(store).incarnation


# --- the claims in memory ----------------------------------------------------------------------------

def test_a_claim_in_memory_is_taken_at_once_and_its_outcome_given_to_whoever_waited() -> None:
    async def scenario() -> None:
        claims = Claims()
        mine = claims.take(["k"])
        assert list(claims.inflight) == ["k"]                               # no await between the check and the claim
        waiter = asyncio.ensure_future(claims.wait_for("k"))
        await asyncio.sleep(0)
        assert not waiter.done()
        delivered = CallReply(ok=True, value={"message_id": "m"})
        claims.release(mine, {"k": delivered}, CallReply(ok=False))
        assert await waiter == delivered and claims.inflight == {}
        assert await claims.wait_for("k") is None                            # nobody holds it: no wait

    asyncio.run(scenario())


def test_a_released_claim_without_an_outcome_answers_the_fallback_and_leaves_a_newer_claim_alone() -> None:
    async def scenario() -> None:
        claims = Claims()
        first = claims.take(["k"])
        newer = claims.take(["k"])                                           # the key claimed again meanwhile
        cut_off = CallReply(ok=False, maybe_delivered=True)
        claims.release(first, {}, cut_off)
        assert first["k"].result() is cut_off and claims.inflight == newer   # the newer claim still holds the key
        waiter = asyncio.ensure_future(claims.wait_for("k"))
        await asyncio.sleep(0)
        claims.release(newer, {}, CallReply(ok=True))
        assert (await waiter).ok and claims.inflight == {}

    asyncio.run(scenario())


# --- outcomes, whatever the store says --------------------------------------------------------------

def test_outcomes_a_store_that_is_down_refused_are_kept_answered_from_memory_and_written_in_order() -> None:
    async def scenario() -> None:
        store, clock = Flaky(), Clock(virtual=True)
        writer = OutcomeWriter(journal(store, clock), clock)
        store.down = True
        sent = CallReply(ok=True, value={"message_id": "m1"})
        await writer.write([(ctx("k1"), "send_email", "delivered", sent.value, None)], {"k1": sent})
        await writer.write([(ctx("k2"), "send_email", "failed", None, "refused")], {})
        assert writer.backlog == 2 and writer.delivered == {"k1": sent}     # a delivered key is never sent again
        await until(lambda: len(clock.slept) >= 3)                           # it keeps trying, its pauses doubling
        assert clock.slept[:3] == [OutcomeWriter.RETRY_FIRST_S, OutcomeWriter.RETRY_FIRST_S * 2,
                                   OutcomeWriter.RETRY_FIRST_S * 4]
        store.down = False
        await until(lambda: writer.backlog == 0)
        assert store.puts == [["k1", "k2"]] and writer.delivered == {}      # oldest first, in one statement
        entries = await store.inner.journal_find_many("email_sending", ["k1", "k2"], provider="p")
        assert [entries[k][0].state for k in ("k1", "k2")] == ["delivered", "failed"]
        # Once the backlog is written, the next outcome goes straight to the store.
        await writer.write([(ctx("k3"), "send_email", "delivered", {"message_id": "m3"}, None)], {})
        assert store.puts[-1] == ["k3"] and writer.backlog == 0

    asyncio.run(scenario())


def test_while_a_backlog_waits_a_new_outcome_queues_behind_it() -> None:
    async def scenario() -> None:
        store, clock = Flaky(), Clock(virtual=True)
        writer = OutcomeWriter(journal(store, clock), clock)
        store.down = True
        await writer.write([(ctx("old"), "send_email", "unknown", None, "cut off mid-send")], {})
        store.down = False
        await writer.write([(ctx("new"), "send_email", "delivered", {"message_id": "n"}, None)], {})
        await until(lambda: writer.backlog == 0)
        assert [key for batch in store.puts for key in batch] == ["old", "new"]  # never written before the older one

    asyncio.run(scenario())
