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

__all__ = ["DROPPED", "NOT_REGISTERED", "ROUTER_GRACE_S", "Await", "GaveUp", "RouterCall", "Sleep",
           "Steps", "router_call", "run", "run_async"]

T = TypeVar("T")

# The router answers within the deadline it was given; past that by this
# much, the client stops waiting for a router that is alive but stuck.
ROUTER_GRACE_S = 5.0

# What ray.get raises for a call the router never answered: it died (and is
# restarting, or was replaced), or it is unreachable for now.
DROPPED = (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError)
NOT_REGISTERED = "its name is not registered (replaced by a redeploy?)"


@dataclass(frozen=True)
class Await:
    submit: Callable[[], tuple[Any, float | None]]   # -> (what to wait on, how long; None: no limit)


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
            answer = get(ref, timeout)
        except timeouts:
            error = TimeoutError("no answer within the wait")
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the protocol, which decides
            error = exc


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
                settled: Callable[[RouterCall], None] = lambda call: None) -> Steps[Any]:
    """Send the call (`send(call)` finds a router replica and returns the ref)
    and wait for the answer; the answer, or GaveUp. `forget(call, keep_handle)`
    leaves out the replica that dropped it for a while, dropping its handle
    unless `keep_handle` (a restarting actor is the same actor: a new lookup
    would need the GCS; a replaced router is found again by name), and says
    whether a live sibling can take the resend at once;
    `resent()` counts each resend; `settled(call)` follows every send, answered or not."""
    while True:
        keep_handle = False
        try:
            return (yield Await(lambda: (send(call), call.wait_s())))
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
        finally:
            settled(call)
        sibling = forget(call, keep_handle)
        delay = 0.0 if sibling and call.remaining_s() >= policy.min_left_s else \
            policy.delay_s(call.resends, call.remaining_s())
        if delay is None:
            return GaveUp(why)
        call.resends += 1
        resent()
        if delay:
            yield Sleep(delay)
