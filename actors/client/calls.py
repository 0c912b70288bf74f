"""A call's way through the client, written once as steps and run by a sync
or an async shell (sans-I/O, as h11 and purgatory keep their protocols).

A protocol is a generator: it yields what it needs done, and gets back the
answer (or has the exception thrown in where it waits), so it reads like
straight-line code and never touches Ray's `get`, asyncio or a sleep:

    Await(submit)  send now (`submit()` finds the actor and calls `.remote`,
                   returning what to wait on and for how long); the answer,
                   or the exception, comes back at the `yield`. A wait that
                   timed out comes back as a plain TimeoutError, whichever
                   shell waited (ray's GetTimeoutError, asyncio's)
    Sleep(delay_s) pause before going on

An Await may carry a patience: when no answer has come after that long, the
shell answers `Silent(waitable)` (a value, not the send's answer), without giving up on the send, and the
protocol may wait on `waitable` again (a later Await whose submit returns it).

`run` drives one with `ray.get` and a blocking sleep (`Gateway.invoke`,
`invoke_many`), `run_async` with `asyncio.wait_for` and an awaited sleep
(`invoke_async`). The protocols: `router_call` here (send to the
capability's router; resend what it dropped), `direct_read` in direct.py.
The Gateway composes them (`yield from`) in gateway.py.

The router call, as a table (`RouterCall` keeps its key, deadline, resends):

    sent, answered                      -> the answer
    sent, dropped (the router died or   -> forget the router's handle; send again
      is restarting), or its name gone     at once to a live sibling replica, or
      after a resend                       pause per ResendPolicy first when there
                                           is none; no time left for an answer: GaveUp
    sent, its name unknown (1st send)   -> NotDeployed raised to the caller
    its name not found in time: the     -> pause and look it up again within the
      GCS (the head) does not answer       deadline, or GaveUp naming the GCS
    a drop by a restarting actor        -> its handle is kept (same actor: a
      (ActorUnavailableError)              new lookup would need the GCS)
    sent, no answer within the wait     -> GaveUp("it gave no answer")
    sent, silent for PATIENCE_S, its    -> wait on (a busy router answers its calls late,
      replica heard from meanwhile         a dead one answers none): no ping
    sent, silent for PATIENCE_S, with   -> ping the replica (one ping per replica at a
      a sibling replica to turn to         time, shared by its silent calls): answered,
                                           wait on; unanswered within PING_S, and no
                                           other call answered meanwhile (Ray holds
                                           calls to an actor it is restarting, for about
                                           1.5 s here, before it drops them), resend at
                                           once to the live sibling, same key, while the
                                           client's resend budget allows (resend.py);
                                           over it, wait for this router's answer
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import ray

from actors.client.resend import DEFAULT_WINDOW_S, ResendPolicy
from actors.errors import ErrorKind, GcsUnavailable, NotDeployed
from actors.messages import ErrorInfo, InvokeResult
from actors.names import router_name

__all__ = ["DROPPED", "NOT_REGISTERED", "PATIENCE_S", "PING_S", "ROUTER_GRACE_S", "Await", "GaveUp", "RouterCall",
           "Silent", "Sleep", "Steps", "router_call", "run", "run_async"]

T = TypeVar("T")

# The router answers within the deadline it was given; past that by this
# much, the client stops waiting for a router that is alive but stuck.
ROUTER_GRACE_S = 5.0

# What ray.get raises for a call the router never answered: it died (and is
# restarting, or was replaced), or it is unreachable for now.
DROPPED = (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError)
NOT_REGISTERED = "its name is not registered (replaced by a redeploy?)"
UNRESPONSIVE = "it stopped answering (a ping went unanswered: Ray is restarting it?)"

# A call to a replica with a sibling that has given no answer after
# PATIENCE_S has the replica pinged; no answer to the ping within PING_S and
# the call goes to the sibling. A ping waits behind the calls the router's
# event loop is running, so at full load it can be late (p99 of a call under
# 64 pipelined: about 90 ms here); a late ping costs little, as a router that
# answers any call meanwhile keeps its calls and the resends on such guesses
# have a budget (resend.py). With 0.1 s the slowest call near a router's
# death was 240-430 ms (bench replicas, 3 rounds), with 0.05 s 120-230 ms.
PATIENCE_S = 0.05
PING_S = 0.05


@dataclass(frozen=True)
class Await:
    submit: Callable[[], tuple[Any, float | None]]   # -> (what to wait on, how long; None: no limit)
    patience_s: float | None = None                  # no answer after this long: Silent is the answer


@dataclass(frozen=True)
class Silent:
    """No answer yet after an Await's patience; the send goes on, and
    `waitable` is what to wait on for its answer."""

    waitable: Any


@dataclass(frozen=True)
class Sleep:
    delay_s: float


Steps = Generator["Await | Sleep", Any, T]


@dataclass(frozen=True)
class GaveUp:
    """The router did not answer within the call's deadline: why."""

    why: str


# --- the shells -----------------------------------------------------------------------
def run(steps: Steps[T], get: Callable[[Any, float | None], Any], sleep: Callable[[float], Any],
        timeouts: tuple[type[BaseException], ...]) -> T:
    """Drive `steps` blocking: `get(ref, timeout)` waits (raising one of
    `timeouts` when the time is up), `sleep(s)` pauses."""
    answer: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(answer) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value
        answer, error = None, None
        if isinstance(step, Sleep):
            sleep(step.delay_s)
            continue
        try:
            ref, timeout = step.submit()
            if _impatient(step.patience_s, timeout):
                try:
                    answer = get(ref, step.patience_s)
                except timeouts:
                    answer = Silent(ref)
                continue
            answer = get(ref, timeout)
        except timeouts:
            error = TimeoutError("no answer within the wait")
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the protocol, which decides
            error = exc


def _impatient(patience_s: float | None, timeout: float | None) -> bool:
    return patience_s is not None and (timeout is None or patience_s < timeout)


def _future(waitable: Any) -> asyncio.Future[Any]:
    """An asyncio future for an ObjectRef (or a future, or an awaitable), to
    wait on more than once without cancelling it in between."""
    if isinstance(waitable, asyncio.Future):
        return waitable
    as_future = getattr(waitable, "as_future", None)
    return as_future() if as_future is not None else asyncio.ensure_future(waitable)


def _forgotten(future: asyncio.Future[Any]) -> None:
    # An abandoned send's outcome (a drop, usually) is read here, so that
    # asyncio does not log it as never retrieved.
    if not future.cancelled():
        future.exception()


async def run_async(steps: Steps[T], sleep: Callable[[float], Any]) -> T:
    """Drive `steps` on the event loop: refs are awaited with
    `asyncio.wait_for`, `await sleep(s)` pauses."""
    answer: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(answer) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value
        answer, error = None, None
        if isinstance(step, Sleep):
            await sleep(step.delay_s)
            continue
        try:
            ref, timeout = step.submit()
            if _impatient(step.patience_s, timeout):
                future = _future(ref)
                done, _ = await asyncio.wait({future}, timeout=step.patience_s)
                if done:
                    answer = future.result()
                else:
                    future.add_done_callback(_forgotten)
                    answer = Silent(future)
                continue
            answer = await asyncio.wait_for(ref, timeout)
        except asyncio.TimeoutError:   # not the builtin one before Python 3.11
            error = TimeoutError("no answer within the wait")
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the protocol, which decides
            error = exc


# --- the router call ----------------------------------------------------------------------
@dataclass
class RouterCall:
    """One call (or one batch) on its way to a router: its key, deadline and resends."""

    capability: str
    method: str
    key: str | None
    dry_run: bool | None
    deadline_s: float | None        # the caller's
    clock: Callable[[], float]
    started: float | None = None
    resends: int = 0
    replica: Any = None              # the router replica the call was last sent to (client/replicas.py)
    sent_at: float | None = None     # when it was last sent

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    def remaining_s(self) -> float:
        window = self.deadline_s if self.deadline_s is not None else DEFAULT_WINDOW_S
        return window - (self.clock() - self.started)

    def router_deadline_s(self) -> float | None:
        """What the router is told: the caller's deadline (None: the config's)
        on the first send; what is left of the window on a resend."""
        if self.deadline_s is None and not self.resends:
            return None
        return max(0.001, self.remaining_s())

    def wait_s(self) -> float | None:
        deadline = self.router_deadline_s()
        return None if deadline is None else deadline + ROUTER_GRACE_S

    def unavailable(self, why: str, namespace: str) -> InvokeResult:
        again = (f"it may have received the request: send it again with idempotency_key {self.key!r}, which "
                 "delivers nothing twice" if self.key else "send it again")
        return InvokeResult(
            ok=False, capability=self.capability, method=self.method, idempotency_key=self.key,
            dry_run=bool(self.dry_run), request_id=uuid.uuid4().hex,
            elapsed_ms=round((self.clock() - self.started) * 1000, 3),
            error=ErrorInfo(kind=ErrorKind.GATEWAY_UNAVAILABLE, retry_after_s=1.0, message=(
                f"{router_name(self.capability)} in namespace {namespace!r} did not answer within the deadline "
                f"({why}; sent {self.resends + 1} time(s)); {again}")))


def router_call(call: RouterCall, send: Callable[[RouterCall], Any], policy: ResendPolicy, *,
                forget: Callable[[RouterCall, bool], bool] = lambda call, keep: False,
                resent: Callable[[], None] = lambda: None,
                settled: Callable[[RouterCall, bool], None] = lambda call, answered: None,
                ping: Callable[[RouterCall], Any] | None = None,
                spoke: Callable[[RouterCall], bool] = lambda call: False,
                spare: Callable[[], bool] = lambda: True,
                ping_wait: Callable[[RouterCall], float] = lambda call: PING_S,
                heard: Callable[[RouterCall], bool] = lambda call: False) -> Steps[Any]:
    """Send the call (`send(call)` finds a router replica and returns the ref)
    and wait for the answer; the answer, or GaveUp. `forget(call, keep_handle)`
    leaves out the replica that dropped it for a while, dropping its handle
    unless `keep_handle` (a restarting actor is the same actor: a new lookup
    would need the GCS; a replaced router is found again by name), and says
    whether a live sibling can take the resend at once;
    `resent()` counts each resend; `settled(call, answered)` follows every
    send, answered or not. `ping(call)`, when given, pings the replica the
    call went to (a ref, or None when it has no sibling to turn to): see
    PATIENCE_S; `spoke(call)`: whether that replica answered any call since
    its ping was sent (a busy router is late with pings, a dead one answers
    nothing), which keeps a call on a router that is slow, not gone;
    `spare()`: whether the client's resend budget (resend.py) allows one more resend on
    such a guess (without, the call waits on its own router); `ping_wait(call)`:
    how long its replica's ping may take (PING_S, or longer for a replica whose
    answers have lately been slow: see Replica.timeout_s); `heard(call)`:
    whether that replica answered a call within the last PATIENCE_S (alive:
    no ping needed. Under load every call is late and a ping per replica
    every PATIENCE_S is load of its own: up to half the calls again at 200
    req/s over six replicas)."""
    while True:
        keep_handle, sibling = False, False
        try:
            answer = yield from _answer(call, send, ping, spoke, spare, settled, forget, ping_wait, heard)
            if answer is not _ABANDONED:
                return answer
            why, sibling = UNRESPONSIVE, True
        except ray.exceptions.ActorUnavailableError as exc:
            why, keep_handle = type(exc).__name__, True
        except DROPPED as exc:
            why = type(exc).__name__
        except GcsUnavailable as exc:
            why, keep_handle = str(exc), True
        except NotDeployed:
            if not call.resends:
                raise
            why = NOT_REGISTERED
        except TimeoutError:
            return GaveUp("it gave no answer")
        if why is not UNRESPONSIVE:
            sibling = forget(call, keep_handle)
        delay = 0.0 if sibling and call.remaining_s() >= policy.min_left_s else \
            policy.delay_s(call.resends, call.remaining_s())
        if delay is None:
            return GaveUp(why)
        call.resends += 1
        resent()
        if delay:
            yield Sleep(delay)


# What _answer gives when the replica did not answer a ping: its sibling takes the call.
_ABANDONED = object()


def _answer(call: RouterCall, send: Callable[[RouterCall], Any], ping: Callable[[RouterCall], Any] | None,
            spoke: Callable[[RouterCall], bool], spare: Callable[[], bool], settled: Callable[[RouterCall, bool], None],
            forget: Callable[[RouterCall, bool], bool], ping_wait: Callable[[RouterCall], float],
            heard: Callable[[RouterCall], bool]) -> Steps[Any]:
    """One send's answer (or its failure, raised). While it is silent and the
    replica has a sibling, the replica is pinged: a ping unanswered leaves the
    replica out (`forget`) and gives _ABANDONED for the resend; with no
    sibling left the send is waited on, as Ray will answer or drop it."""
    sent: Any = None               # the send, once silent: waited on again
    patience = PATIENCE_S if ping is not None else None
    abandoned = answered = False
    try:
        while True:
            submit = (lambda: (send(call), call.wait_s())) if sent is None else (lambda w=sent: (w, call.wait_s()))
            answer = yield Await(submit, patience)
            if not isinstance(answer, Silent):
                answered = True
                return answer
            sent = answer.waitable
            if ping is not None and heard(call):
                continue           # it answers calls: this one is queued behind them
            probe = ping(call) if ping is not None else None
            if probe is None:
                patience = None    # no sibling to turn to: wait for Ray's answer or drop
                continue
            if (yield from _answers(probe, ping_wait(call))) or spoke(call):
                patience *= 2      # alive, and slow: ping it less often
                continue
            if not spare():
                patience = None    # resends over budget (overload, most likely): wait for this router
                continue
            settled(call, False)
            abandoned = True
            if forget(call, True):
                return _ABANDONED
            patience = None        # no live sibling after all: Ray answers or drops the send
    finally:
        if not abandoned:
            settled(call, answered)


def _answers(probe: Any, wait_s: float) -> Steps[bool]:
    try:
        yield Await(lambda: (probe, wait_s))
        return True
    except (TimeoutError, GcsUnavailable, *DROPPED):
        return False
