"""Delivering a capability's outbox (actors/router/outbox_delivery.py) on
its own: the router it delivers through is a fake implementing the small
`Router` protocol (its answers scripted), the outbox, keys and journals live
in a real in-memory SQLite store, time is one virtual clock. No Ray."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from actors.clock import Clock as RouterClock
from actors.durable import JournalEntry
from actors.durable.sqlite import SqliteStore
from actors.errors import ErrorKind
from actors.messages import InvokeResult, Resolution
from actors.router.idempotency import IdempotencyRecords, fingerprint
from actors.router.outbox_delivery import OutboxDelivery, Router
from actors.router.request import Request
from actors.router.results import failed, succeeded
from actors.telemetry import NO_TRACING
from tests.unit.fakes import Clock, capability_spec

CAP = "email_sending"


def email(n: int) -> dict[str, Any]:
    return {"to": [f"lead{n}@example.com"], "subject": "Hi", "text": "Hello"}


class FakeRouter:
    """What outbox delivery uses of a router: `route` answers with `answer(request)`."""

    def __init__(self, store: SqliteStore, clock: Clock, sleep: Callable[[float], Any]):
        spec = capability_spec(["a", "outbox"], CAP)
        self.capability = CAP
        self.routing = spec.routing
        self.providers = {p.name: p for p in spec.providers}
        self.clock = RouterClock(time=clock, monotonic=clock.monotonic, sleep=sleep)
        self.results = IdempotencyRecords(CAP, 3600.0, self.clock, lambda: store, owner="router-1")
        self._store = store
        self.tracing = NO_TRACING
        self.available = True
        self.routed: list[tuple[Request, bool]] = []
        self.finished: list[InvokeResult] = []
        self.counts: list[str] = []
        self.resolutions: list[Resolution] = []
        self.answer: Callable[[Request], InvokeResult] = lambda r: succeeded(r, "a", {"message_id": f"m-{r.key}"})

    def store(self) -> SqliteStore:
        return self._store

    def count(self, name: str) -> None:
        self.counts.append(name)

    def real_provider_available(self) -> bool:
        return self.available

    async def route(self, r: Request, recover: bool) -> InvokeResult:
        self.routed.append((r, recover))
        return self.answer(r)

    async def ask(self, name: str, r: Request) -> Resolution:
        return self.resolutions.pop(0)

    def finish(self, started: float, result: InvokeResult, r: Request | None = None) -> InvokeResult:
        self.finished.append(result)
        return result


class World:
    def __init__(self) -> None:
        self.clock = Clock(virtual=True)
        self.sleeps: list[float] = []
        self.store = SqliteStore(":memory:", clock=self.clock)
        self.router = FakeRouter(self.store, self.clock, self.sleep)
        self.outbox = OutboxDelivery(self.router)

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.clock.now += s
        await asyncio.sleep(0)

    def queue(self, n: int, reason: str = "queued", payload: Any = None, provider: str | None = None) -> int:
        item = asyncio.run(self.store.outbox_add(
            capability=CAP, method="send_email", payload=payload if payload is not None else email(n),
            idempotency_key=f"k{n}", request_id=f"r{n}", reason=reason, now=self.clock(), provider=provider))
        self.clock.now += 1
        return item.id

    def item(self, item_id: int) -> Any:
        return asyncio.run(self.store.outbox_get(item_id))

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)


def test_the_fake_is_a_router_as_outbox_delivery_needs_one() -> None:
    w = World()
    router: Router = w.router   # the protocol, checked by a type checker; here: it has every member
    assert all(hasattr(router, m) for m in ("capability", "routing", "providers", "results", "clock", "store", "count",
                                            "real_provider_available", "route", "ask", "finish"))


def test_a_drain_delivers_oldest_first_each_under_its_own_key_never_to_the_outbox_at_its_rate() -> None:
    w = World()
    ids = [w.queue(n) for n in range(3)]
    report = w.run(w.outbox.drain(limit=10, rate_per_s=4.0))
    assert report == {"capability": CAP, "delivered": ids, "failed": [], "left": 0}
    assert [r.key for r, _ in w.router.routed] == ["k0", "k1", "k2"]
    assert all(r.draining and recover and r.journal for r, recover in w.router.routed)
    assert w.sleeps == [0.25, 0.25, 0.25]
    item = w.item(ids[0])
    assert (item.state, item.provider, item.result, item.attempts) == ("delivered", "a", {"message_id": "m-k0"}, 1)
    assert w.router.counts == ["outbox_delivered"] * 3
    assert [r.request_id for r in w.router.finished] == [r.base["request_id"] for r, _ in w.router.routed]
    stored = w.run(w.router.results.stored("k0"))
    # a repeat of the key gets the delivery, naming the item it came from
    assert stored is not None and stored.ok and stored.provider == "a" and stored.outbox_id == ids[0]


def test_a_drain_stops_at_the_first_failure_keeping_the_order() -> None:
    w = World()
    ids = [w.queue(n) for n in range(3)]
    w.router.answer = lambda r: failed(r, ErrorKind.ALL_PROVIDERS_FAILED, "a: transient")
    report = w.run(w.outbox.drain(limit=10))
    assert report["delivered"] == [] and report["failed"] == [{"id": ids[0], "error": "a: transient"}]
    assert report["left"] == 2 and len(w.router.routed) == 1
    first = w.item(ids[0])
    assert (first.state, first.attempts, first.error) == ("pending", 1, "a: transient")
    assert w.item(ids[1]).attempts == 0


def test_no_drain_while_no_real_provider_would_take_the_items() -> None:
    w = World()
    [w.queue(n) for n in range(2)]
    w.router.available = False
    assert w.run(w.outbox.drain()) == {"capability": CAP, "delivered": [], "failed": [], "left": 2}
    assert w.router.routed == []


def test_an_operator_s_ids_are_delivered_whatever_their_place() -> None:
    w = World()
    ids = [w.queue(n) for n in range(3)]
    w.router.available = False
    assert w.run(w.outbox.drain(ids=[ids[2]]))["delivered"] == [ids[2]]
    assert w.item(ids[0]).state == "pending"


def test_items_another_drain_holds_are_left_to_it() -> None:
    w = World()
    ids = [w.queue(n) for n in range(2)]
    w.run(w.store.outbox_lease(CAP, "another-supervisor/outbox", 60.0, 1))
    assert w.run(w.outbox.drain())["delivered"] == [ids[1]]


def test_an_item_no_longer_valid_is_parked_not_sent() -> None:
    w = World()
    bad = w.queue(0, payload={"to": "not-a-list"})
    report = w.run(w.outbox.drain())
    assert report["failed"][0]["id"] == bad and w.router.routed == []
    item = w.item(bad)
    assert item.state == "parked" and item.error.startswith("no longer a valid payload")


def test_the_key_s_queued_answer_is_taken_over_by_the_delivery() -> None:
    w = World()
    item_id = w.queue(0)
    queued = InvokeResult(ok=True, provider="outbox", value={"queued": True, "delivered": False}, outbox_id=item_id)
    print_ = fingerprint("send_email", email(0))

    async def keep_queued() -> None:
        await w.router.results.acquire("k0", print_, w.clock.monotonic() + 5)
        await w.router.results.release("k0", queued, print_, w.clock.monotonic() + 5)

    w.run(keep_queued())
    assert w.run(w.outbox.drain())["delivered"] == [item_id]
    assert w.run(w.router.results.stored("k0")).provider == "a"


def test_a_parked_item_the_provider_confirms_is_delivered_and_its_key_answers_so() -> None:
    w = World()
    confirmed, denied, unknown = (w.queue(n, reason="outcome_unknown", provider="a") for n in range(3))
    w.router.resolutions = [Resolution(state="delivered", value={"message_id": "<sent>"}),
                            Resolution(state="not_delivered"), Resolution(state="unknown")]
    report = w.run(w.outbox.settle_parked())
    assert report == {"capability": CAP, "delivered": [confirmed], "requeued": [denied], "unknown": [unknown]}
    assert (w.item(confirmed).state, w.item(denied).state, w.item(unknown).state) == ("delivered", "pending", "parked")
    kept = w.run(w.router.results.stored("k0"))
    assert kept.ok and kept.replayed and kept.value == {"message_id": "<sent>"}
    assert w.router.routed == []   # settling sends nothing


def test_a_forced_replay_takes_an_unknown_send_as_not_delivered_and_sends_it_once() -> None:
    w = World()
    item_id = w.queue(0, reason="outcome_unknown", provider="a")
    w.run(w.store.journal_put_many([JournalEntry(capability=CAP, provider="a", key="k0", request_id="r0",
                                                 method="send_email", state="unknown", incarnation="p",
                                                 updated_at=w.clock())]))
    w.router.resolutions = [Resolution(state="unknown")]
    report = w.run(w.outbox.replay([item_id], force=True))
    assert report["delivered"] == [item_id] and report["settled"]["unknown"] == [item_id]
    [entry] = w.run(w.store.journal_find_many(CAP, ["k0"]))["k0"]
    assert (entry.state, entry.incarnation, entry.error) == ("failed", "operator", "an operator replayed it")
    assert len(w.router.routed) == 1


def test_a_replay_without_force_leaves_an_unknown_send_parked() -> None:
    w = World()
    item_id = w.queue(0, reason="outcome_unknown", provider="a")
    w.router.resolutions = [Resolution(state="unknown")]
    report = w.run(w.outbox.replay([item_id]))
    assert report["delivered"] == [] and w.item(item_id).state == "parked" and w.router.routed == []
    assert msgspec.to_builtins(report)["settled"]["unknown"] == [item_id]
