"""The client's call protocols as steps (actors/client/calls.py, direct.py),
driven by hand and by both shells: no Ray cluster, no clock but the test's,
no sleeping."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import ray

from actors.client.calls import (
    NOT_REGISTERED,
    PATIENCE_S,
    PING_S,
    UNRESPONSIVE,
    Await,
    GaveUp,
    RouterCall,
    Silent,
    Sleep,
    router_call,
    run,
    run_async,
)
from actors.client.direct import DirectRoutes, direct_read
from actors.client.resend import ResendPolicy
from actors.errors import ErrorKind, NotDeployed
from actors.messages import CallReply, Ranking


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Script:
    """What the router does with each send: an exception (raised where the
    call waits) or an answer. Records the deadline each send told it."""

    def __init__(self, *outcomes: Any):
        self.outcomes = list(outcomes)
        self.deadlines: list[float | None] = []

    def send(self, call: RouterCall) -> Any:
        self.deadlines.append(call.router_deadline_s())
        return self.outcomes.pop(0)


def steps_of(call: RouterCall, script: Script, events: list[str], sibling: bool = False) -> Any:
    def forget(c: RouterCall, keep_handle: bool) -> bool:
        events.append("keep" if keep_handle else "forget")
        return sibling

    return router_call(call, script.send, ResendPolicy(), forget=forget, resent=lambda: events.append("resent"),
                       settled=lambda c, answered: events.append("settled"))


def drive(steps: Any, clock: Clock) -> tuple[Any, list[Any]]:
    """Run the steps by hand: an Await's outcome is thrown in when it is an exception."""
    seen: list[Any] = []
    answer: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(answer) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value, seen
        answer, error = None, None
        seen.append(step)
        if isinstance(step, Sleep):
            clock.now += step.delay_s
            continue
        ref, _ = step.submit()
        if isinstance(ref, BaseException):
            error = ref
        else:
            answer = ref


def call(clock: Clock, deadline_s: float | None = 5.0) -> RouterCall:
    return RouterCall("email_sending", "send_email", "k1", None, deadline_s, clock)


def test_an_answer_on_the_first_send_ends_the_call() -> None:
    clock, events = Clock(), []
    answer, seen = drive(steps_of(call(clock), Script("answer"), events), clock)
    assert answer == "answer" and [type(s) for s in seen] == [Await] and events == ["settled"]


def test_a_dropped_call_is_sent_again_after_growing_pauses_with_what_is_left_of_the_deadline() -> None:
    clock, events = Clock(), []
    script = Script(ray.exceptions.ActorDiedError(), ray.exceptions.ActorUnavailableError("restarting", None), "ok")
    c = call(clock)
    answer, seen = drive(steps_of(c, script, events), clock)
    assert answer == "ok" and c.resends == 2
    assert [s.delay_s for s in seen if isinstance(s, Sleep)] == [0.05, 0.1]
    # a restarting router (ActorUnavailableError) keeps its handle
    assert events == ["settled", "forget", "resent", "settled", "keep", "resent", "settled"]
    assert script.deadlines == [5.0, pytest.approx(4.95), pytest.approx(4.85)]


def test_a_call_a_replica_dropped_goes_to_a_live_sibling_at_once() -> None:
    # Router replicas: no pause while Ray restarts the one that died.
    clock, events = Clock(), []
    script = Script(ray.exceptions.ActorDiedError(), "ok")
    c = call(clock)
    answer, seen = drive(steps_of(c, script, events, sibling=True), clock)
    assert answer == "ok" and c.resends == 1 and not any(isinstance(s, Sleep) for s in seen)
    assert events == ["settled", "forget", "resent", "settled"] and script.deadlines == [5.0, 5.0]


def test_a_sibling_does_not_outlive_the_deadline() -> None:
    clock, events = Clock(), []
    c = call(clock, deadline_s=1.0)
    clock.now = 0.99  # the drop came with 10 ms left: less than a resend needs
    answer, _ = drive(steps_of(c, Script(ray.exceptions.ActorDiedError()), events, sibling=True), clock)
    assert answer == GaveUp("ActorDiedError") and c.resends == 0


def test_not_deployed_is_raised_on_the_first_send_and_a_drop_on_a_resend() -> None:
    clock = Clock()
    with pytest.raises(NotDeployed):
        drive(steps_of(call(clock), Script(NotDeployed("no router")), []), clock)
    script = Script(ray.exceptions.ActorDiedError(), *[NotDeployed("gone")] * 100)
    answer, _ = drive(steps_of(call(clock, deadline_s=1.0), script, []), clock)
    assert answer == GaveUp(NOT_REGISTERED)


def test_no_answer_within_the_wait_gives_up_at_once() -> None:
    clock, events = Clock(), []
    answer, seen = drive(steps_of(call(clock), Script(TimeoutError()), events), clock)
    assert answer == GaveUp("it gave no answer") and len(seen) == 1 and events == ["settled"]


def test_a_drop_with_no_time_left_for_an_answer_gives_up_naming_why() -> None:
    clock, events = Clock(), []
    c = call(clock, deadline_s=0.06)
    answer, seen = drive(steps_of(c, Script(ray.exceptions.ActorDiedError()), events), clock)
    assert answer == GaveUp("ActorDiedError") and c.resends == 0 and events == ["settled", "forget"]


def test_any_other_failure_reaches_the_caller() -> None:
    clock = Clock()
    with pytest.raises(KeyError):
        drive(steps_of(call(clock), Script(KeyError("x")), []), clock)


def test_the_wait_is_the_routers_deadline_plus_grace_and_none_without_a_deadline() -> None:
    clock = Clock()
    steps = steps_of(call(clock, deadline_s=None), Script("ok"), [])
    step = next(steps)
    assert step.submit() == ("ok", None)
    steps = steps_of(call(clock, deadline_s=2.0), Script("ok"), [])
    assert next(steps).submit() == ("ok", 7.0)


def test_both_shells_run_the_same_steps_to_the_same_end() -> None:
    def script() -> Script:
        return Script(ray.exceptions.ActorDiedError(), "ok")

    clock, slept = Clock(), []

    def get(ref: Any, timeout: float | None) -> Any:
        if isinstance(ref, BaseException):
            raise ref
        return ref

    assert run(steps_of(call(clock), script(), []), get, slept.append, (ray.exceptions.GetTimeoutError,)) == "ok"

    async def awaited() -> Any:
        loop = asyncio.get_running_loop()

        def send(c: RouterCall) -> Any:   # an ObjectRef is awaitable: a future stands in for it
            outcome = s.send(c)
            future = loop.create_future()
            future.set_exception(outcome) if isinstance(outcome, BaseException) else future.set_result(outcome)
            return future

        async def sleep(delay: float) -> None:
            slept.append(delay)

        s = script()
        return await run_async(router_call(call(clock), send, ResendPolicy()), sleep)

    assert asyncio.run(awaited()) == "ok" and slept == [0.05, 0.05]


def test_each_shell_turns_its_own_timeout_into_no_answer() -> None:
    clock = Clock()

    def get(ref: Any, timeout: float | None) -> Any:
        raise ray.exceptions.GetTimeoutError("late")

    assert run(steps_of(call(clock), Script("ref"), []), get, lambda s: None,
               (ray.exceptions.GetTimeoutError,)) == GaveUp("it gave no answer")

    def waits_for(ref: Any) -> Any:      # a protocol of one step, to see what the shell throws in
        try:
            return (yield Await(lambda: (ref, 0.01)))
        except TimeoutError:
            return GaveUp("it gave no answer")

    async def never() -> Any:
        return await run_async(waits_for(asyncio.get_running_loop().create_future()), asyncio.sleep)

    assert asyncio.run(never()) == GaveUp("it gave no answer")


# --- a silent call: the replica pinged, the call resent to a sibling when it does not answer -------
class Silence:
    """Where a send's answer is late: its Await is answered by Silent once
    (the shell's patience ran out), the same send's next Await by `then`."""

    def __init__(self, then: Any):
        self.then = then


def drive_silent(steps: Any, pings: list[Any]) -> tuple[Any, list[Any]]:
    """Run the steps by hand; a send that is a Silence is silent once; the
    pings' outcomes come from `pings` in order (an exception, or an answer)."""
    seen: list[Any] = []
    answer: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(answer) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value, seen
        answer, error = None, None
        seen.append(step)
        ref, _ = step.submit()
        if isinstance(ref, Silence) and step.patience_s is not None:
            answer = Silent(ref.then)   # waited on again: the next Await's submit returns `ref.then`
        elif ref == "ping":
            outcome = pings.pop(0)
            error, answer = (outcome, None) if isinstance(outcome, BaseException) else (None, outcome)
        elif isinstance(ref, Silence):
            answer = ref.then
        elif isinstance(ref, BaseException):
            error = ref
        else:
            answer = ref


def silent_steps(c: RouterCall, script: Script, events: list[str], *, sibling: bool, spoke: bool = False,
                 spare: bool = True, ping_wait: float = PING_S, heard: list[bool] | None = None) -> Any:
    def forget(call: RouterCall, keep_handle: bool) -> bool:
        events.append("keep" if keep_handle else "forget")
        return sibling

    def ping(call: RouterCall) -> Any:
        events.append("ping")
        return "ping" if sibling else None

    return router_call(c, script.send, ResendPolicy(), forget=forget, resent=lambda: events.append("resent"),
                       settled=lambda call, answered: events.append("settled" if answered else "settled unanswered"),
                       ping=ping, spoke=lambda call: spoke, spare=lambda: spare, ping_wait=lambda call: ping_wait,
                       heard=lambda call: heard.pop(0) if heard else False)


def test_a_silent_call_to_a_replica_that_answers_its_ping_is_waited_on_not_sent_again() -> None:
    clock, events = Clock(), []
    script = Script(Silence(Silence("late answer")))
    answer, seen = drive_silent(silent_steps(call(clock), script, events, sibling=True), [True, True])
    assert answer == "late answer" and len(script.deadlines) == 1          # one send, never repeated
    assert events == ["ping", "ping", "settled"]
    sends = [s for s in seen if s.patience_s is not None]
    assert [s.patience_s for s in sends] == [PATIENCE_S, 2 * PATIENCE_S, 4 * PATIENCE_S]   # pinged less often
    assert all(s.submit()[1] == PING_S for s in seen if s.patience_s is None)


def test_a_silent_call_whose_replica_does_not_answer_its_ping_goes_to_the_sibling_at_once() -> None:
    clock, events = Clock(), []
    c = call(clock)
    script = Script(Silence("never read"), "ok")
    answer, seen = drive_silent(silent_steps(c, script, events, sibling=True), [TimeoutError()])
    assert answer == "ok" and c.resends == 1 and not any(isinstance(s, Sleep) for s in seen)
    # settled once per send; the replica left out keeping its handle (Ray restarts the same actor)
    assert events == ["ping", "settled unanswered", "keep", "resent", "settled"]
    assert script.deadlines == [5.0, 5.0]


def test_a_silent_call_whose_replica_answered_others_meanwhile_is_waited_on_without_a_ping() -> None:
    # Under load every call is late: a ping per replica each time would be load of its own.
    clock, events = Clock(), []
    script = Script(Silence(Silence(Silence("late answer"))))
    answer, seen = drive_silent(silent_steps(call(clock), script, events, sibling=True, heard=[True, True, False]),
                                [True])
    assert answer == "late answer" and len(script.deadlines) == 1
    assert events == ["ping", "settled"]                  # pinged once: when it had gone quiet
    sends = [s for s in seen if s.patience_s is not None]
    assert [s.patience_s for s in sends] == [PATIENCE_S, PATIENCE_S, PATIENCE_S, 2 * PATIENCE_S]


def test_a_replica_late_with_its_ping_but_answering_calls_keeps_the_call() -> None:
    # Busy, not gone: resending would only add to its load and its sibling's.
    clock, events = Clock(), []
    script = Script(Silence("late answer"))
    answer, _ = drive_silent(silent_steps(call(clock), script, events, sibling=True, spoke=True), [TimeoutError()])
    assert answer == "late answer" and len(script.deadlines) == 1 and "resent" not in events


def test_over_the_resend_budget_a_silent_call_whose_ping_went_unanswered_waits_for_its_router() -> None:
    # Overload makes pings late too: past the budget, resending only feeds the storm.
    clock, events = Clock(), []
    script = Script(Silence(Silence("answer at last")))
    answer, seen = drive_silent(silent_steps(call(clock), script, events, sibling=True, spare=False), [TimeoutError()])
    assert answer == "answer at last" and len(script.deadlines) == 1
    assert events == ["ping", "settled"] and seen[-1].patience_s is None   # no more pings: it waits


def test_the_ping_is_waited_on_as_long_as_the_replica_says() -> None:
    clock, events = Clock(), []
    _, seen = drive_silent(silent_steps(call(clock), Script(Silence("late")), events, sibling=True, ping_wait=0.7),
                           [True])
    assert [s.submit()[1] for s in seen if s.patience_s is None] == [0.7]


def test_a_ping_the_replica_drops_counts_as_unanswered() -> None:
    clock, events = Clock(), []
    answer, _ = drive_silent(silent_steps(call(clock), Script(Silence(None), "ok"), events, sibling=True),
                             [ray.exceptions.ActorUnavailableError("restarting", None)])
    assert answer == "ok" and "resent" in events


def test_with_no_sibling_a_silent_call_is_waited_on_without_pings() -> None:
    clock, events = Clock(), []
    script = Script(Silence("answer at the restart"))
    answer, seen = drive_silent(silent_steps(call(clock), script, events, sibling=False), [])
    assert answer == "answer at the restart" and len(script.deadlines) == 1
    assert events == ["ping", "settled"] and seen[-1].patience_s is None


def test_a_silent_call_with_no_time_left_gives_up_naming_why() -> None:
    clock, events = Clock(), []
    c = call(clock, deadline_s=1.0)

    class Late(Script):
        def send(self, call: RouterCall) -> Any:
            clock.now = 0.99
            return super().send(call)

    answer, _ = drive_silent(silent_steps(c, Late(Silence(None)), events, sibling=True), [TimeoutError()])
    assert answer == GaveUp(UNRESPONSIVE)


def test_both_shells_answer_silent_and_wait_on_the_same_send_again() -> None:
    def protocol(ref: Any) -> Any:
        answer = yield Await(lambda: (ref, 5.0), patience_s=0.01)
        if not isinstance(answer, Silent):
            return answer
        return ("silent", (yield Await(lambda: (answer.waitable, 5.0))))

    waits: list[tuple[Any, float | None]] = []

    def get(ref: Any, timeout: float | None) -> Any:
        waits.append((ref, timeout))
        if timeout == 0.01:
            raise ray.exceptions.GetTimeoutError("not yet")
        return "answer"

    assert run(protocol("ref"), get, lambda s: None, (ray.exceptions.GetTimeoutError,)) == ("silent", "answer")
    assert waits == [("ref", 0.01), ("ref", 5.0)]

    async def later() -> Any:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, future.set_result, "answer")
        return await run_async(protocol(future), asyncio.sleep)

    assert asyncio.run(later()) == ("silent", "answer")


# --- direct reads --------------------------------------------------------------------------
RANKING = Ranking(capability="email_verification", providers=["zb"], actor_names={"zb": "provider:email_verification:zb"},
                  attempt_timeout_s={"zb": 5.0})


class Handle:
    def __init__(self, outcome: Any):
        handle = self

        class Call:
            @staticmethod
            def remote(method: str, payload: Any, ctx: Any) -> Any:
                handle.ctx = ctx
                return outcome

        self.call = Call()


class Actors:
    def __init__(self, handle: Handle):
        self.handle = handle

    def get_actor(self, name: str, namespace: str) -> Any:
        return self.handle


def read(routes: DirectRoutes, ranking: Any, clock: Clock) -> Any:
    return drive(direct_read(routes, lambda: ranking, "email_verification", "verify_email",
                             {"email": "ann@example.com"}, None, None), clock)


def test_a_direct_read_asks_for_the_ranking_then_calls_its_first_provider() -> None:
    clock = Clock()
    routes = DirectRoutes(Actors(Handle(CallReply(ok=True, value={"status": "valid"}, latency_ms=1.0))), "ns", clock)
    (served, tried), seen = read(routes, RANKING, clock)
    assert served.ok and served.provider == "zb" and tried is None and len(seen) == 2
    (served, tried), seen = read(routes, RuntimeError("not asked"), clock)     # held: not asked again
    assert served.ok and len(seen) == 1


def test_a_direct_read_without_a_ranking_is_left_to_the_router() -> None:
    clock = Clock()
    routes = DirectRoutes(Actors(Handle("unused")), "ns", clock)
    assert read(routes, ray.exceptions.ActorDiedError(), clock)[0] == (None, None)
    assert read(routes, Ranking(capability="email_verification"), clock)[0] == (None, None)


def test_a_provider_that_gives_no_answer_is_a_timed_out_attempt_for_the_router_to_list() -> None:
    clock = Clock()
    routes = DirectRoutes(Actors(Handle(TimeoutError())), "ns", clock)
    (served, tried), _ = read(routes, RANKING, clock)
    assert served is None and tried.provider == "zb" and tried.error_kind is ErrorKind.TIMEOUT
    assert routes.fresh("email_verification") is None        # asked again next time
