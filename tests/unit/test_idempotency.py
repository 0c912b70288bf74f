"""Idempotency keys (actors/router/idempotency.py) on their own: claims in
memory and in a real in-memory SQLite store, first results replayed,
refusals, another router's claim waited for, a predecessor's claims ended.
No Ray, no router; one virtual clock that sleeping moves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.clock import Clock as RouterClock
from actors.durable import KeyClaim
from actors.durable.sqlite import SqliteStore
from actors.errors import ErrorKind
from actors.messages import ErrorInfo, InvokeResult
from actors.router.idempotency import (
    LEASE_GRACE_S,
    POLL_FIRST_S,
    Claimed,
    IdempotencyRecords,
    Refused,
    Replayed,
    fingerprint,
    worth_keeping,
)
from tests.unit.fakes import Clock

CAP = "email_sending"
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}
SENT = InvokeResult(ok=True, value={"message_id": "m-1"}, provider="a", request_id="r-1")
FAILED = InvokeResult(ok=False, request_id="r-2", error=ErrorInfo(kind=ErrorKind.ALL_PROVIDERS_FAILED, message="x"))
WINDOW_S = 3600.0


class World:
    def __init__(self, owner: str = "router-1") -> None:
        self.clock = Clock(virtual=True)
        self.sleeps: list[float] = []
        self.store = SqliteStore(":memory:", clock=self.clock)
        self.records = self.new_records(owner)

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.clock.now += s
        await asyncio.sleep(0)

    def new_records(self, owner: str, owner_gone: Any = None) -> IdempotencyRecords:
        clock = RouterClock(time=self.clock, monotonic=self.clock.monotonic, sleep=self.sleep)
        return IdempotencyRecords(CAP, WINDOW_S, clock, lambda: self.store, owner=owner, owner_gone=owner_gone)

    def deadline(self, s: float = 5.0) -> float:
        return self.clock.monotonic() + s


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_fingerprint_is_the_method_and_the_payload_whatever_the_order_of_its_fields() -> None:
    assert fingerprint("send_email", {"a": 1, "b": [1, 2]}) == fingerprint("send_email", {"b": [1, 2], "a": 1})
    assert fingerprint("send_email", {"a": 1}) != fingerprint("send_email", {"a": 2})
    assert fingerprint("send_email", {"a": 1}) != fingerprint("publish_post", {"a": 1})


def test_what_is_kept_a_delivery_and_a_request_in_the_outbox_never_a_failure_nor_a_dry_run() -> None:
    assert worth_keeping(SENT) and worth_keeping(InvokeResult(ok=False, outbox_id=7))
    assert not worth_keeping(FAILED) and not worth_keeping(InvokeResult(ok=True, dry_run=True))


def test_a_repeat_gets_the_first_result_and_a_different_request_under_the_key_is_refused() -> None:
    w = World()
    fp = fingerprint("send_email", EMAIL)

    async def scenario() -> tuple[Any, Any, Any]:
        first = await w.records.acquire("k", fp, w.deadline())
        await w.records.release("k", SENT, fp, w.deadline())
        again = await w.records.acquire("k", fp, w.deadline())
        other = await w.records.acquire("k", fingerprint("send_email", {**EMAIL, "text": "Bye"}), w.deadline())
        return first, again, other

    first, again, other = run(scenario())
    assert first == Claimed(resumed=False)
    assert again == Replayed(SENT)
    assert isinstance(other, Refused) and other.kind is ErrorKind.IDEMPOTENCY_KEY_REUSED and "'k'" not in other.message
    assert run(w.records.stored("k")) == SENT


def test_a_failure_that_delivered_nothing_is_not_kept_a_retry_may_deliver() -> None:
    w = World()

    async def scenario() -> Any:
        await w.records.acquire("k", None, w.deadline())
        await w.records.release("k", FAILED, None, w.deadline())
        return await w.records.acquire("k", None, w.deadline())

    assert isinstance(run(scenario()), Claimed)
    assert run(w.records.stored("k")) is None


def test_a_concurrent_repeat_waits_for_the_first_in_memory() -> None:
    w = World()
    fp = fingerprint("send_email", EMAIL)

    async def scenario() -> tuple[Any, Any]:
        assert isinstance(await w.records.acquire("k", fp, w.deadline()), Claimed)
        assert w.records.running("k") is not None
        waiting = asyncio.ensure_future(w.records.acquire("k", fp, w.deadline()))
        other = await w.records.acquire("k", "another-fingerprint", w.deadline())   # refused at once, in memory
        await asyncio.sleep(0)
        assert not waiting.done()
        await w.records.release("k", SENT, fp, w.deadline())
        return await waiting, other

    repeat, other = run(scenario())
    assert repeat == Replayed(SENT)
    assert isinstance(other, Refused) and other.kind is ErrorKind.IDEMPOTENCY_KEY_REUSED


def test_a_generated_key_is_claimed_in_memory_and_written_only_to_keep_its_result() -> None:
    w = World()

    async def scenario() -> tuple[dict, dict]:
        assert await w.records.acquire("auto-1", None, w.deadline(), durable=False) == Claimed()
        before = await w.store.get_keys(CAP, ["auto-1"])
        await w.records.release("auto-1", SENT, None, w.deadline(), durable=False)
        return before, await w.store.get_keys(CAP, ["auto-1"])

    before, after = run(scenario())
    assert before == {} and after["auto-1"].state == "done"


def test_a_key_another_router_holds_is_waited_for_then_refused_at_the_deadline() -> None:
    w = World()
    run(w.store.claim_keys(CAP, [KeyClaim("k", None)], "router-2:p", 60.0, 0.0))
    deadline = w.deadline(0.5)
    refused = run(w.records.acquire("k", None, deadline))
    assert isinstance(refused, Refused) and refused.kind is ErrorKind.DEADLINE_EXCEEDED
    assert "router-2:p" in refused.message and "Nothing was sent" in refused.message
    assert w.sleeps[0] == POLL_FIRST_S and w.sleeps[1] == 2 * POLL_FIRST_S    # looking again, less and less often
    assert w.clock.monotonic() < deadline


def test_a_key_another_router_released_is_claimed_once_its_claim_ends() -> None:
    w = World()
    run(w.store.claim_keys(CAP, [KeyClaim("k", None)], "router-2:p", 0.1, 0.0))   # a short lease, run out soon
    assert run(w.records.acquire("k", None, w.deadline())) == Claimed(resumed=True)


def test_the_claims_a_dead_predecessor_left_end_before_the_first_claim() -> None:
    w = World(owner="actor-1")
    run(w.store.claim_keys(CAP, [KeyClaim("k", None)], "actor-1:old-process", 600.0, 0.0))
    claim = run(w.records.acquire("k", None, w.deadline()))
    # Resumed: the earlier request's sends may be in the journals, to settle first.
    assert claim == Claimed(resumed=True) and w.sleeps == []


def test_a_key_a_dead_sibling_replica_held_is_taken_over_without_waiting_for_its_lease() -> None:
    # Router replicas: the caller resent to this one when the other died mid-call.
    asked: list[str] = []

    async def gone(owner: str) -> bool:
        asked.append(owner)
        return owner.startswith("replica-2:")

    w = World()
    w.records = w.new_records("replica-1", owner_gone=gone)
    run(w.store.claim_keys(CAP, [KeyClaim("k", None)], "replica-2:p", 600.0, 0.0))
    claim = run(w.records.acquire("k", None, w.deadline()))
    # Resumed: what the dead one sent is settled from the journals before anything is sent.
    assert claim == Claimed(resumed=True) and asked == ["replica-2:p"]
    assert sum(w.sleeps) < 0.1           # not the 600 s lease, not the deadline


def test_a_key_a_live_sibling_holds_is_waited_for_and_its_owner_asked_after_a_while() -> None:
    asked: list[str] = []

    async def alive(owner: str) -> bool:
        asked.append(owner)
        return False

    w = World()
    w.records = w.new_records("replica-1", owner_gone=alive)
    run(w.store.claim_keys(CAP, [KeyClaim("k", None)], "replica-2:p", 600.0, 0.0))
    refused = run(w.records.acquire("k", None, w.deadline(0.5)))
    assert isinstance(refused, Refused) and refused.kind is ErrorKind.DEADLINE_EXCEEDED
    assert asked and len(asked) < len(w.sleeps)   # not at the first looks: most holders end within 50 ms


def test_a_result_is_replayed_within_the_window_only() -> None:
    w = World()

    async def keep() -> None:
        await w.records.acquire("k", None, w.deadline())
        await w.records.release("k", SENT, None, w.deadline())

    run(keep())
    w.clock.now += WINDOW_S - 1
    assert run(w.records.stored("k")) == SENT
    w.clock.now += 2
    assert run(w.records.stored("k")) is None
    assert run(w.records.acquire("k", None, w.deadline())) == Claimed(resumed=True)


@pytest.mark.parametrize("deadline_s", [1.0, 30.0])
def test_a_claim_outlives_its_request_s_deadline_by_the_grace(deadline_s: float) -> None:
    w = World()
    run(w.records.acquire("k", None, w.deadline(deadline_s)))
    [record] = run(w.store.get_keys(CAP, ["k"])).values()
    assert record.state == "running" and record.lease_left_s == pytest.approx(deadline_s + LEASE_GRACE_S)
