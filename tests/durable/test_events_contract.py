"""Delivery events and the suppression list, held to one contract by both
stores: each event kept once whatever the retries, found by any reference
its request left (request id, key digest, Message-ID digest), unmatched
ones kept and counted; suppressions added once, listed, removed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from actors.durable import StateStore
from actors.durable.store import Suppression
from actors.events.matching import refs_for
from actors.events.model import DeliveryEvent
from actors.events.timeline import fold

CAP = "email_sending"


def ev(event_id: str, state: str | None, at: float, **kw: Any) -> DeliveryEvent:
    return DeliveryEvent(provider_kind="sendgrid", event_id=event_id, kind=state or "open", state=state,
                         occurred_at=at, recipient=kw.pop("recipient", "a@example.com"), **kw)


def test_events_are_kept_once_and_found_by_any_reference(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        a, b = make_store(), make_store()
        refs = refs_for("req-1", "key-1")
        by_request = ev("e1", "accepted", 10.0, request_id="req-1")
        by_key = ev("e2", "delivered", 12.0, key_hash=refs.key_hashes[0])
        by_message_id = ev("e3", "deferred", 11.0, rfc_message_id=f"{refs.message_refs[0]}.aicmo@example.com")
        stranger = ev("e4", "dropped", 13.0)
        assert await a.events_put(CAP, "sg", [by_request, by_key], received_at=100.0) == 2
        # The provider retries the batch (another replica gets it): nothing new.
        assert await b.events_put(CAP, "sg", [by_key, by_message_id, stranger], received_at=101.0) == 2
        found = await b.events_find(refs)
        assert sorted(s.event.event_id for s in found) == ["e1", "e2", "e3"]
        assert {s.provider for s in found} == {"sg"} and all(s.capability == CAP for s in found)
        # Arrival order was e1, e2, e3; the timeline puts them in the provider's order.
        view = fold(s.event for s in found)
        assert [e.event_id for e in view.events] == ["e1", "e3", "e2"] and view.state == "delivered"
        assert await a.events_counts() == {(CAP, "sg"): (4, 1)}
        assert [s.event.event_id for s in await a.events_since(CAP, 100.5)] == ["e3", "e4"]
        assert await a.events_find(refs_for("someone-else")) == []
        # Another provider may use the same event id: its own.
        assert await a.events_put(CAP, "mg", [stranger], received_at=102.0) == 1
        await a.close(), await b.close()

    asyncio.run(scenario())


def test_suppressions_are_added_once_listed_and_removed(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        row = Suppression(capability=CAP, address="Bad@Example.com", reason="hard bounce", added_at=5.0,
                          provider="sg", request_id="r1")
        assert await store.suppress_add([row, msgspec.structs.replace(row, reason="again", added_at=6.0)]) == 1
        [kept] = await store.suppress_list()
        assert (kept.address, kept.reason, kept.provider) == ("bad@example.com", "hard bounce", "sg")
        assert await store.suppress_list(CAP, ["BAD@example.com", "good@example.com"]) == [kept]
        assert await store.suppress_list(CAP, []) == [] and await store.suppress_list("other") == []
        assert await store.suppress_remove("bad@EXAMPLE.com") == 1
        assert await store.suppress_list() == [] and await store.suppress_remove("bad@example.com") == 0
        await store.close()

    asyncio.run(scenario())


def test_a_kept_message_is_found_by_its_refs_and_marked_resent_once(make_store: Callable[..., StateStore]) -> None:
    from actors.durable.store import SentMessage

    async def scenario() -> None:
        a, b = make_store(), make_store()
        refs = refs_for("req-9", "key-9")
        row = SentMessage(capability=CAP, request_id="req-9", provider="sg", payload=b"\x80", sent_at=1.0,
                          key_hash=refs.key_hashes[0], message_ref=refs.message_refs[-1],
                          rfc_message_id=f"<{refs.message_refs[-1]}.aicmo@example.com>")
        await a.sent_put([row])
        await b.sent_put([row])                                        # kept once
        [found] = await b.sent_find(CAP, refs_for(None, "key-9"))
        assert found == row
        assert await b.sent_find("other", refs) == [] and await a.sent_find(CAP, refs_for("nope")) == []
        # Two routers race to re-send it: one wins.
        won = await asyncio.gather(a.sent_mark_resent(CAP, "req-9", 5.0), b.sent_mark_resent(CAP, "req-9", 5.0))
        assert sorted(won) == [False, True]
        assert (await a.sent_find(CAP, refs))[0].resent_at == 5.0
        await a.close(), await b.close()

    asyncio.run(scenario())
