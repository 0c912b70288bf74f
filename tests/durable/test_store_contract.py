"""The state store's contract, run against both stores: the embedded SQLite
file and a real PostgreSQL server. Claims are raced from several
connections (as actors on several machines would), and each must have
exactly one winner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from actors.durable import Claims, JournalEntry, KeyClaim, StateStore
from actors.durable.store import SpendDelta

CAP = "email_sending"
LONG_AGO = 0.0  # fresh_after for "every stored result is still fresh"


def entry(key: str, state: str = "started", provider: str = "a", **kw: Any) -> JournalEntry:
    return JournalEntry(capability=CAP, provider=provider, key=key, request_id=f"r-{key}", method="send_email",
                        state=state, incarnation=kw.pop("incarnation", "i1"), updated_at=kw.pop("at", time.time()), **kw)


async def queue(store: StateStore, key: str, reason: str = "queued", capability: str = CAP) -> Any:
    return await store.outbox_add(capability=capability, method="send_email", payload={"to": ["a@example.com"]},
                                  idempotency_key=key, request_id=f"r-{key}", reason=reason, now=time.time())


# --- keys: claims and first results -----------------------------------------------------

def test_a_key_is_claimed_once_and_the_loser_sees_who_holds_it(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        a, b = make_store(), make_store()
        assert await a.claim_keys(CAP, [KeyClaim("k1", "fp1"), KeyClaim("k2")], "router-a", 30, LONG_AGO) == Claims()
        decided = await b.claim_keys(CAP, [KeyClaim("k1", "fp1"), KeyClaim("k3")], "router-b", 30, LONG_AGO)
        lost = decided.lost
        assert list(lost) == ["k1"] and decided.resumed == []  # k3 is new: nothing to resume
        record = lost["k1"]
        assert (record.state, record.owner, record.fingerprint, record.result) == ("running", "router-a", "fp1", None)
        assert 25 < record.lease_left_s <= 30
        # The holder claiming again (a retry of its own) keeps it, resuming its record.
        assert await a.claim_keys(CAP, [KeyClaim("k1", "fp1")], "router-a", 30, LONG_AGO) == Claims(resumed=["k1"])
        await a.close(), await b.close()

    asyncio.run(scenario())


def test_a_finished_key_holds_its_first_result_until_the_window_passes(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.claim_keys(CAP, [KeyClaim("k1", "fp1")], "r", 30, LONG_AGO)
        await store.finish_keys(CAP, "r", [("k1", b"first", "fp1")], now=1000.0)
        lost = (await store.claim_keys(CAP, [KeyClaim("k1", "fp1")], "other", 30, fresh_after=999.0)).lost
        assert lost["k1"].state == "done" and lost["k1"].result == b"first" and lost["k1"].owner is None
        assert lost["k1"].fingerprint == "fp1"
        # The window passed: a new request with the key is a new request.
        assert (await store.claim_keys(CAP, [KeyClaim("k1", "fp2")], "other", 30, fresh_after=1001.0)
                ).resumed == ["k1"]
        got = await store.get_keys(CAP, ["k1"])
        assert got["k1"].state == "running" and got["k1"].result is None and got["k1"].fingerprint == "fp2"
        await store.close()

    asyncio.run(scenario())


def test_a_claim_whose_lease_ran_out_is_taken_over(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        a, b = make_store(), make_store()
        await a.claim_keys(CAP, [KeyClaim("k1")], "dead-router", 0.2, LONG_AGO)
        assert "k1" in (await b.claim_keys(CAP, [KeyClaim("k1")], "router-b", 30, LONG_AGO)).lost
        await asyncio.sleep(0.3)
        assert await b.claim_keys(CAP, [KeyClaim("k1")], "router-b", 30, LONG_AGO) == Claims(resumed=["k1"])
        # The late holder's finish no longer touches it.
        await a.finish_keys(CAP, "dead-router", [("k1", b"late", None)], now=time.time())
        assert (await b.get_keys(CAP, ["k1"]))["k1"].owner == "router-b"
        await a.close(), await b.close()

    asyncio.run(scenario())


def test_finishing_without_a_result_drops_the_claim(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.claim_keys(CAP, [KeyClaim("k1")], "r", 30, LONG_AGO)
        await store.finish_keys(CAP, "r", [("k1", None, None)], now=time.time())
        assert await store.get_keys(CAP, ["k1"]) == {}
        await store.close()

    asyncio.run(scenario())


def test_a_key_never_claimed_gets_its_result_stored(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.finish_keys(CAP, "r", [("auto-1", b"sent", "fp")], now=5.0)
        record = (await store.get_keys(CAP, ["auto-1"]))["auto-1"]
        assert (record.state, record.result, record.fingerprint, record.stored_at) == ("done", b"sent", "fp", 5.0)
        await store.close()

    asyncio.run(scenario())


def test_a_redelivery_takes_over_a_stored_result_and_puts_it_back_if_it_fails(
        make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store, other = make_store(), make_store()
        await store.finish_keys(CAP, "router", [("k1", b"queued", "fp")], now=time.time())
        assert await store.claim_keys(CAP, [KeyClaim("k1", "fp", redeliver=True)], "drain-1", 30, LONG_AGO) == Claims(
            resumed=["k1"])
        # A second drain (another supervisor) cannot take it while the first holds it.
        lost = (await other.claim_keys(CAP, [KeyClaim("k1", "fp", redeliver=True)], "drain-2", 30, LONG_AGO)).lost
        assert lost["k1"].state == "running" and lost["k1"].owner == "drain-1"
        await store.finish_keys(CAP, "drain-1", [("k1", None, None)], now=time.time())
        record = (await store.get_keys(CAP, ["k1"]))["k1"]
        assert (record.state, record.result, record.owner) == ("done", b"queued", None)
        assert (await store.claim_keys(CAP, [KeyClaim("k1", "fp", redeliver=True)], "drain-2", 30, LONG_AGO)).lost == {}
        await store.finish_keys(CAP, "drain-2", [("k1", b"delivered", "fp")], now=time.time())
        assert (await store.get_keys(CAP, ["k1"]))["k1"].result == b"delivered"
        await store.close(), await other.close()

    asyncio.run(scenario())


def test_racing_claims_from_many_connections_have_one_winner_per_key(make_store: Callable[..., StateStore]) -> None:
    keys = [f"k{i}" for i in range(40)]

    async def scenario() -> None:
        stores = [make_store() for _ in range(4)]
        for s in stores:  # connected (and migrated) before the race
            await s.ping()

        async def claimer(n: int) -> set[str]:
            store = stores[n % len(stores)]
            mine = keys[n % 3:] + keys[:n % 3]  # different orders
            lost = (await store.claim_keys(CAP, [KeyClaim(k) for k in mine], f"owner-{n}", 30, LONG_AGO)).lost
            return set(mine) - set(lost)

        won = await asyncio.gather(*(claimer(n) for n in range(8)))
        for key in keys:
            assert sum(key in w for w in won) == 1, key
        for s in stores:
            await s.close()

    asyncio.run(scenario())


def test_a_restarted_router_ends_its_predecessors_claims(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.claim_keys(CAP, [KeyClaim("k1"), KeyClaim("k2")], "actor7:old", 30, LONG_AGO)
        await store.claim_keys(CAP, [KeyClaim("k3")], "actor8:live", 30, LONG_AGO)
        await store.finish_keys(CAP, "r", [("k4", b"queued", None)], now=time.time())
        await store.claim_keys(CAP, [KeyClaim("k4", redeliver=True)], "actor7:old", 30, LONG_AGO)
        assert await store.release_claims("actor7:") == 3
        # The next claim of those keys wins at once, as a resumption: the dead
        # request may have left sends in the journals.
        decided = await store.claim_keys(CAP, [KeyClaim(k) for k in ("k1", "k2", "k3")], "actor7:new", 30, LONG_AGO)
        assert sorted(decided.resumed) == ["k1", "k2"] and list(decided.lost) == ["k3"]
        decided = await store.claim_keys(CAP, [KeyClaim("k4", redeliver=True)], "actor7:new", 30, LONG_AGO)
        assert decided.resumed == ["k4"] and (await store.get_keys(CAP, ["k4"]))["k4"].result == b"queued"
        await store.close()

    asyncio.run(scenario())


def test_stored_results_expire(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.finish_keys(CAP, "r", [("old", b"x", None)], now=100.0)
        await store.finish_keys(CAP, "r", [("new", b"y", None)], now=300.0)
        # A finish does not overwrite a result nobody claimed.
        await store.finish_keys(CAP, "r", [("new", b"z", None)], now=100.0)
        await store.claim_keys(CAP, [KeyClaim("running")], "r", 30, LONG_AGO)
        assert await store.expire_keys(before=200.0) == 1
        assert set(await store.get_keys(CAP, ["old", "new", "running"])) == {"new", "running"}
        await store.close()

    asyncio.run(scenario())


# --- journal --------------------------------------------------------------------------

def test_outcomes_written_with_their_charges_are_one_write(make_store: Callable[..., StateStore]) -> None:
    """What a keyed send cost goes in with its outcome (provider/spending.py): a lost process leaves none uncharged."""
    async def scenario() -> None:
        store = make_store()
        charge = SpendDelta(capability=CAP, provider="a", period="month", period_start=0.0, calls=2, maybe_calls=1,
                            amount_nanos=30, currency="USD", at=10.0)
        await store.journal_put_many([entry("k1", "delivered", value={"id": 1}), entry("k2", "unknown")], [charge])
        await store.journal_put_many([entry("k3", "delivered")], [charge])
        found = await store.journal_find_many(CAP, ["k1", "k2", "k3"])
        assert {k: v[0].state for k, v in found.items()} == {"k1": "delivered", "k2": "unknown", "k3": "delivered"}
        [row] = await store.spend_get(CAP, 10.0)
        assert (row.calls, row.maybe_calls, row.amount_nanos, row.lifetime_calls) == (4, 2, 60, 6)
        await store.close()

    asyncio.run(scenario())


def test_the_journal_claims_a_send_only_where_none_is_known(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.journal_put_many([entry("delivered", "delivered", value={"message_id": "m1"}),
                                      entry("failed", "failed", error="550"), entry("unknown", "unknown"),
                                      entry("started", "started", incarnation="dead")])
        taken = await store.journal_claim([entry(k, incarnation="i2") for k in
                                           ("new", "delivered", "failed", "unknown", "started")])
        assert {k: e.state for k, e in taken.items()} == {"delivered": "delivered", "unknown": "unknown",
                                                           "started": "started"}
        assert taken["delivered"].value == {"message_id": "m1"} and taken["started"].incarnation == "dead"
        found = await store.journal_find_many(CAP, ["new", "failed"])
        assert {k: (v[0].state, v[0].incarnation) for k, v in found.items()} == {
            "new": ("started", "i2"), "failed": ("started", "i2")}
        await store.close()

    asyncio.run(scenario())


def test_racing_journal_claims_have_one_winner_per_key(make_store: Callable[..., StateStore]) -> None:
    keys = [f"k{i}" for i in range(30)]

    async def scenario() -> None:
        stores = [make_store() for _ in range(3)]
        for s in stores:
            await s.ping()
        results = await asyncio.gather(*(s.journal_claim([entry(k, incarnation=f"p{n}") for k in keys])
                                         for n, s in enumerate(stores)))
        winners = [set(keys) - set(taken) for taken in results]
        assert all(sum(k in w for w in winners) == 1 for k in keys)
        for s in stores:
            await s.close()

    asyncio.run(scenario())


def test_the_journal_is_found_by_key_and_provider_in_chunks(make_store: Callable[..., StateStore]) -> None:
    keys = [f"k{i}" for i in range(1200)]

    async def scenario() -> None:
        store = make_store()
        await store.journal_put_many([entry(k, "delivered", provider=p) for k in keys for p in ("a", "b")])
        found = await store.journal_find_many(CAP, [*keys, "missing", "k1"])
        assert len(found) == len(keys) and all(len(v) == 2 for v in found.values())
        mine = await store.journal_find_many(CAP, keys, provider="b")
        assert all([e.provider for e in v] == ["b"] for v in mine.values())
        assert await store.journal_find_many("crm_sync", keys) == {}
        await store.close()

    asyncio.run(scenario())


# --- outbox ---------------------------------------------------------------------------

def test_one_live_outbox_item_per_key(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        a, b = make_store(), make_store()
        first, again = await asyncio.gather(queue(a, "k1"), queue(b, "k1"))
        assert first.id == again.id and first.state == "pending"
        await a.outbox_update(first.id, time.time(), state="delivered", result={"message_id": "m"})
        later = await queue(b, "k1")  # a new request with an old key, after the first was delivered
        assert later.id != first.id
        parked = await queue(a, "k2", reason="outcome_unknown")
        assert parked.state == "parked"
        assert await a.outbox_counts() == {(CAP, "pending"): 1, (CAP, "parked"): 1}
        assert [i.id for i in await a.outbox_list(CAP)] == sorted([later.id, parked.id])
        assert (await a.outbox_find(CAP, "k1")).id == later.id
        await a.close(), await b.close()

    asyncio.run(scenario())


def test_two_drains_lease_disjoint_items_oldest_first(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        a, b = make_store(), make_store()
        items = [await queue(a, f"k{i}") for i in range(6)]
        first = await a.outbox_lease(CAP, "drain-a", 30, limit=4)
        second = await b.outbox_lease(CAP, "drain-b", 30, limit=4)
        assert [i.id for i in first] == [i.id for i in items[:4]] and all(i.lease_owner == "drain-a" for i in first)
        assert [i.id for i in second] == [i.id for i in items[4:]]
        assert await b.outbox_lease(CAP, "drain-b", 30, limit=4) == []
        # Delivered, and released: the released one is free again, the delivered one is not pending.
        await a.outbox_update(first[0].id, time.time(), state="delivered")
        await a.outbox_release([i.id for i in first[1:]], "drain-a")
        again = await b.outbox_lease(CAP, "drain-b", 30, limit=10)
        assert [i.id for i in again] == [i.id for i in first[1:]]
        # An operator's ids are leased whatever their place.
        await b.outbox_release([items[5].id], "drain-b")
        assert [i.id for i in await a.outbox_lease(CAP, "op", 30, limit=10, ids=[items[5].id, 999])] == [items[5].id]
        await a.close(), await b.close()

    asyncio.run(scenario())


def test_a_lease_that_ran_out_is_leased_again(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        item = await queue(store, "k1")
        assert [i.id for i in await store.outbox_lease(CAP, "dead-drain", 0.2, limit=5)] == [item.id]
        assert await store.outbox_lease(CAP, "drain", 30, limit=5) == []
        await asyncio.sleep(0.3)
        assert [i.id for i in await store.outbox_lease(CAP, "drain", 30, limit=5)] == [item.id]
        await store.close()

    asyncio.run(scenario())


def test_racing_drains_never_lease_one_item_twice(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        stores = [make_store() for _ in range(3)]
        for i in range(30):
            await queue(stores[0], f"k{i}")
        leased = await asyncio.gather(*(s.outbox_lease(CAP, f"d{n}", 30, limit=12) for n, s in enumerate(stores)))
        ids = [i.id for batch in leased for i in batch]
        assert len(ids) == len(set(ids)) == 30
        for s in stores:
            await s.close()

    asyncio.run(scenario())


def test_outbox_updates_are_checked_and_keep_payloads(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        item = await queue(store, "k1")
        updated = await store.outbox_update(item.id, time.time(), attempts=2, error="503", provider="smtp")
        assert (updated.attempts, updated.error, updated.provider, updated.payload) == (2, "503", "smtp",
                                                                                         {"to": ["a@example.com"]})
        with pytest.raises(ValueError, match="unknown outbox fields"):
            await store.outbox_update(item.id, time.time(), namespace="other")
        assert await store.outbox_get(987654) is None and await store.outbox_update(987654, 1.0, attempts=1) is None
        await store.close()

    asyncio.run(scenario())


# --- gateway-wide ---------------------------------------------------------------------

def test_namespaces_share_a_database_without_seeing_each_other(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        mine, theirs = make_store(), make_store("other-" + make_store.kind)  # type: ignore[attr-defined]
        await mine.claim_keys(CAP, [KeyClaim("k1")], "r", 30, LONG_AGO)
        assert await theirs.claim_keys(CAP, [KeyClaim("k1")], "r2", 30, LONG_AGO) == Claims()
        await queue(mine, "k1")
        await mine.journal_put_many([entry("k1", "delivered")])
        assert await theirs.outbox_list() == [] and await theirs.journal_find_many(CAP, ["k1"]) == {}
        assert await mine.secret("audit") != await theirs.secret("audit")
        await mine.close(), await theirs.close()

    asyncio.run(scenario())


def test_a_secret_is_made_once_and_shared(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        a, b = make_store(), make_store()
        first, second = await asyncio.gather(a.secret("audit-hmac"), b.secret("audit-hmac"))
        assert first == second and len(first) == 32
        assert await a.secret("other") != first
        await a.close(), await b.close()

    asyncio.run(scenario())


def test_markers_are_seen_through_every_connection(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        a, b = make_store(), make_store()
        await a.put_marker("token-1", "node-a")
        assert await b.find_marker("token-1") == "node-a" and await b.find_marker("nope") is None
        await a.close(), await b.close()

    asyncio.run(scenario())


def test_pruning_keeps_what_is_still_in_doubt(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.journal_put_many([entry("old-delivered", "delivered", at=100.0), entry("old-failed", "failed", at=100.0),
                                      entry("old-started", "started", at=100.0), entry("old-unknown", "unknown", at=100.0),
                                      entry("new-delivered", "delivered", at=900.0)])
        items = [await queue(store, f"o{i}") for i in range(4)]
        await store.outbox_update(items[0].id, 100.0, state="delivered")
        await store.outbox_update(items[1].id, 100.0, state="dropped")
        await store.outbox_update(items[2].id, 900.0, state="delivered")
        pruned = await store.prune(journal_before=500.0, outbox_before=500.0)
        assert pruned == {"journal": 2, "outbox": 2, "spend": 0}
        left = await store.journal_find_many(CAP, ["old-delivered", "old-failed", "old-started", "old-unknown",
                                                   "new-delivered"])
        assert set(left) == {"old-started", "old-unknown", "new-delivered"}
        assert [i.id for i in await store.outbox_list(None, ("pending", "delivered", "dropped"))] == [
            items[2].id, items[3].id]
        await store.close()

    asyncio.run(scenario())


def test_health_counts_round_trips(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.ping()
        before = store.health().round_trips
        await store.claim_keys(CAP, [KeyClaim(f"k{i}") for i in range(50)], "r", 30, LONG_AGO)
        await store.journal_claim([entry(f"k{i}") for i in range(50)])
        health = store.health()
        assert health.ok and health.round_trips - before == 2  # a batch of claims is one statement
        assert "password" not in health.url and health.kind == make_store.kind  # type: ignore[attr-defined]
        await store.close()

    asyncio.run(scenario())


def test_expiry_and_pruning_go_a_batch_per_transaction_and_reach_every_row(
        make_store: Callable[..., StateStore], monkeypatch: pytest.MonkeyPatch) -> None:
    """A first expiry of thousands of rows in one transaction stalled every
    write behind it (issue 20, item 6): each batch is its own round trip,
    and the batches go on until nothing old is left."""
    import actors.durable.batches as batches

    monkeypatch.setattr(batches, "PRUNE_BATCH", 3)

    async def scenario() -> None:
        store = make_store()
        await store.finish_keys(CAP, "r", [(f"old{i}", b"x", None) for i in range(7)], now=100.0)
        await store.finish_keys(CAP, "r", [("new", b"y", None)], now=300.0)
        before = store.health().round_trips
        assert await store.expire_keys(before=200.0) == 7
        assert store.health().round_trips - before >= 3  # 3 + 3 + 1: three transactions at least
        assert set(await store.get_keys(CAP, [f"old{i}" for i in range(7)] + ["new"])) == {"new"}

        await store.journal_put_many([entry(f"j{i}", "delivered", at=100.0) for i in range(7)]
                                     + [entry("doubt", "unknown", at=100.0)])
        items = [await queue(store, f"o{i}") for i in range(4)]
        for item in items:
            await store.outbox_update(item.id, 100.0, state="delivered")
        before = store.health().round_trips
        assert await store.prune(journal_before=500.0, outbox_before=500.0) == {"journal": 7, "outbox": 4, "spend": 0}
        assert store.health().round_trips - before >= 5  # journal 3 + 3 + 1, outbox 3 + 1
        assert set(await store.journal_find_many(CAP, [f"j{i}" for i in range(7)] + ["doubt"])) == {"doubt"}
        assert await store.outbox_list(None, ("pending", "delivered", "dropped")) == []
        await store.close()

    asyncio.run(scenario())
