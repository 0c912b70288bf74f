"""Settling what a router could not see (actors/router/unknown_outcomes.py)
on its own: a provider asked through a scripted `resolve`, the journals and
the outbox in a real in-memory SQLite store, one virtual clock. No Ray, no
router."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.clock import Clock as RouterClock
from actors.durable import JournalEntry, StoreUnavailable
from actors.durable.sqlite import SqliteStore
from actors.errors import ActorUnreachable, ErrorKind
from actors.messages import CallContext, Resolution
from actors.payloads import METHODS, validate_payload
from actors.router.request import Request
from actors.router.unknown_outcomes import RESOLVE_RETRY_S, Settler
from tests.unit.fakes import Clock, capability_spec

CAP = "email_sending"
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


class World:
    """A Settler over providers a, b and the outbox, answering from `answers`:
    per provider, the Resolutions (or exceptions) to give in turn."""

    def __init__(self, answers: dict[str, list[Any]] | None = None, *, resolve: bool = True) -> None:
        self.clock = Clock(virtual=True)
        self.store = SqliteStore(":memory:", clock=self.clock)
        self.answers = answers or {}
        self.asked: list[tuple[str, CallContext]] = []
        self.counted: list[str] = []
        self.sleeps: list[float] = []
        self.store_down = False
        spec = capability_spec(["a", "b", "outbox"])
        self.providers = {p.name: p for p in spec.providers}
        clock = RouterClock(time=self.clock, monotonic=self.clock.monotonic, sleep=self.sleep)
        self.settler = Settler(CAP, self.providers, self.resolve if resolve else None, self.the_store, clock,
                               self.counted.append)

    def the_store(self) -> SqliteStore:
        if self.store_down:
            raise StoreUnavailable("sqlite:///:memory:", "the store is down")
        return self.store

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.clock.now += s
        await asyncio.sleep(0)

    async def resolve(self, name: str, method: str, payload: Any, ctx: CallContext) -> Resolution:
        self.asked.append((name, ctx))
        answer = self.answers[name].pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def request(self, key: str = "k-1", deadline_s: float = 5.0, draining: bool = False) -> Request:
        spec = METHODS[CAP]["send_email"]
        base = dict(request_id="r-1", idempotency_key=key, dry_run=False, capability=CAP, method="send_email")
        return Request(spec=spec, payload=validate_payload(spec, EMAIL), key=key, journal=True,
                       deadline=self.clock.monotonic() + deadline_s, deadline_s=deadline_s, base=base, draining=draining)

    def journal(self, provider: str, state: str, value: Any = None, key: str = "k-1") -> None:
        asyncio.run(self.store.journal_put_many([JournalEntry(
            capability=CAP, provider=provider, key=key, request_id="r-0", method="send_email", state=state,
            incarnation="p-0", updated_at=self.clock(), value=value)]))


DELIVERED = Resolution(state="delivered", value={"message_id": "<was-sent>"})
NOT_DELIVERED = Resolution(state="not_delivered")
UNKNOWN = Resolution(state="unknown", error="the provider keeps no record of it")


def test_a_send_the_provider_confirms_is_a_success_replayed_not_sent_again() -> None:
    w = World({"a": [DELIVERED]})
    res = asyncio.run(w.settler.settle(w.request(), "a", "timed out"))
    assert res.ok and res.provider == "a" and res.replayed and res.value == {"message_id": "<was-sent>"}
    assert w.counted == ["resolved_delivered"] and w.asked[0][1].idempotency_key == "k-1"


def test_a_send_the_provider_says_never_went_out_may_go_elsewhere() -> None:
    w = World({"a": [NOT_DELIVERED]})
    assert asyncio.run(w.settler.settle(w.request(), "a", "timed out")) is None
    assert w.counted == ["resolved_not_delivered"]


def test_a_send_nobody_can_tell_about_is_parked_in_the_outbox_never_sent_elsewhere() -> None:
    w = World({"a": [UNKNOWN]})
    res = asyncio.run(w.settler.settle(w.request(), "a", "timed out"))
    assert not res.ok and res.error.kind is ErrorKind.OUTCOME_UNKNOWN and res.outbox_id is not None
    assert "not sent anywhere else" in res.error.message and "the provider keeps no record" in res.error.message
    item = asyncio.run(w.store.outbox_get(res.outbox_id))
    assert (item.state, item.reason, item.provider, item.idempotency_key) == ("parked", "outcome_unknown", "a", "k-1")


def test_a_key_with_a_live_outbox_item_parks_that_item() -> None:
    w = World({"a": [UNKNOWN, UNKNOWN]})
    first = asyncio.run(w.settler.settle(w.request(), "a", "timed out"))
    second = asyncio.run(w.settler.settle(w.request(), "a", "timed out again"))
    assert second.outbox_id == first.outbox_id
    assert len(asyncio.run(w.store.outbox_list(CAP))) == 1


def test_with_the_store_down_it_is_not_parked_but_still_not_sent_elsewhere() -> None:
    w = World({"a": [UNKNOWN]})
    w.store_down = True
    res = asyncio.run(w.settler.settle(w.request(deadline_s=0.5), "a", "timed out"))
    assert res.error.kind is ErrorKind.OUTCOME_UNKNOWN and res.outbox_id is None
    assert "could not be parked" in res.error.message and "never sending it twice" in res.error.message


def test_a_restarting_provider_actor_is_asked_again_until_it_answers() -> None:
    restarting = ActorUnreachable(ErrorKind.UNAVAILABLE, "a: provider actor is restarting")
    w = World({"a": [restarting, restarting, DELIVERED]})
    res = asyncio.run(w.settler.settle(w.request(), "a", "crashed"))
    assert res.ok and len(w.asked) == 3 and w.sleeps == [RESOLVE_RETRY_S, RESOLVE_RETRY_S]


def test_asked_until_the_deadline_then_unknown() -> None:
    w = World({"a": [ActorUnreachable(ErrorKind.UNAVAILABLE, "a: restarting")] * 100})
    resolution = asyncio.run(w.settler.ask("a", w.request(deadline_s=1.0)))
    assert resolution.state == "unknown" and "did not answer" in (resolution.error or "")
    assert 1 < len(w.asked) < 100


def test_a_router_that_cannot_ask_says_so() -> None:
    w = World(resolve=False)
    resolution = asyncio.run(w.settler.ask("a", w.request()))
    assert resolution == Resolution(state="unknown", error="this router cannot ask providers")


def test_recovery_returns_a_delivery_the_journals_hold() -> None:
    w = World()
    w.journal("b", "delivered", {"message_id": "<b>"})
    res = asyncio.run(w.settler.recover(w.request()))
    assert res.ok and res.provider == "b" and res.replayed and w.asked == []


def test_recovery_prefers_a_real_delivery_to_the_outbox_s_and_ignores_the_outbox_s_own_while_draining() -> None:
    w = World()
    w.journal("outbox", "delivered", {"queued": True, "delivered": False})
    w.journal("a", "delivered", {"message_id": "<a>"})
    assert asyncio.run(w.settler.recover(w.request())).provider == "a"
    only_queued = World()
    only_queued.journal("outbox", "delivered", {"queued": True, "delivered": False})
    assert asyncio.run(only_queued.settler.recover(only_queued.request())).provider == "outbox"
    assert asyncio.run(only_queued.settler.recover(only_queued.request(draining=True))) is None


def test_recovery_asks_about_a_send_in_doubt_and_sends_nothing_itself() -> None:
    w = World({"a": [NOT_DELIVERED]})
    w.journal("a", "started")
    assert asyncio.run(w.settler.recover(w.request())) is None     # certainly not sent: the request may go on
    assert [name for name, _ in w.asked] == ["a"]
    doubtful = World({"a": [DELIVERED]})
    doubtful.journal("a", "unknown")
    assert asyncio.run(doubtful.settler.recover(doubtful.request())).replayed


def test_recovery_of_a_key_nobody_journaled_changes_nothing() -> None:
    w = World()
    assert asyncio.run(w.settler.recover(w.request())) is None and w.asked == []
