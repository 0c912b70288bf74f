"""How a router reaches its provider actors on Ray: by name, in its
namespace, each handle kept until its actor dies. Ray's failures become
`ActorUnreachable` here, in one place, with the kind that says what the
router may do next (a dead or restarting actor is a failed attempt, never a
crashed router); the `send`, `send_many` and `resolve` seams of RouterCore
are these methods."""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from actors.errors import ActorUnreachable, ErrorKind, GcsUnavailable, NotDeployed
from actors.messages import CallContext, CallReply, Resolution
from actors.ops.directory import ActorDirectory

__all__ = ["ACTOR_GRACE_S", "ProviderCalls"]

# A provider actor enforces the attempt's timeout itself; the router waits a
# little longer before it decides the actor itself is stuck.
ACTOR_GRACE_S = 1.0


class ProviderCalls:
    def __init__(self, actor_names: dict[str, str], namespace: str, directory: ActorDirectory | None = None):
        self.actor_names = actor_names
        self._namespace = namespace
        # Handles kept, lookups off the loop and bounded: the router serves on through the head's outage.
        self._directory = directory or ActorDirectory(namespace, owner="router")

    def handle(self, name: str) -> Any:
        return self._directory.actor(self.actor_names[name])

    def forget(self, name: str) -> None:
        """Look the actor up again next time (it may come back under the same name)."""
        self._directory.forget(self.actor_names[name])

    async def call(self, name: str, method: str, args: tuple[Any, ...], timeout_s: float) -> Any:
        try:
            ref = getattr(self.handle(name), method).remote(*args)
        except (NotDeployed, ValueError) as exc:  # no actor by that name (removed, or not yet created): nothing sent
            raise ActorUnreachable(ErrorKind.UNAVAILABLE, f"{name}: provider actor not found: {exc}") from None
        except GcsUnavailable as exc:  # its name could not be looked up: nothing was sent
            raise ActorUnreachable(ErrorKind.UNAVAILABLE, f"{name}: {exc}") from None
        try:
            return await asyncio.wait_for(ref, timeout_s)
        except asyncio.TimeoutError:
            ray.cancel(ref)
            raise ActorUnreachable(ErrorKind.TIMEOUT, f"{name}: provider actor gave no answer within {timeout_s:.2f}s",
                                   maybe_delivered=True) from None
        except asyncio.CancelledError:
            ray.cancel(ref)  # a hedge that lost: stop the work at the provider too
            raise
        except ray.exceptions.ActorUnavailableError as exc:
            raise ActorUnreachable(ErrorKind.UNAVAILABLE, f"{name}: provider actor is restarting or unreachable: "
                                   f"{type(exc).__name__}", maybe_delivered=True) from None
        except ray.exceptions.RayActorError as exc:
            self.forget(name)
            raise ActorUnreachable(ErrorKind.CRASHED, f"{name}: provider actor died: {type(exc).__name__}",
                                   maybe_delivered=True) from None
        except ray.exceptions.RayTaskError as exc:
            raise ActorUnreachable(ErrorKind.CRASHED, f"{name}: provider actor failed: {exc.cause!r}",
                                   maybe_delivered=True) from None

    async def send(self, name: str, method: str, payload: Any, ctx: CallContext) -> CallReply:
        return await self.call(name, "call", (method, payload, ctx), ctx.timeout_s + ACTOR_GRACE_S)

    async def send_many(self, name: str, calls: list[tuple[str, Any, CallContext]]) -> list[CallReply]:
        timeout_s = max(ctx.timeout_s for _, _, ctx in calls) + ACTOR_GRACE_S
        return await self.call(name, "call_many", (calls,), timeout_s)

    async def resolve(self, name: str, method: str, payload: Any, ctx: CallContext) -> Resolution:
        return await self.call(name, "resolve", (method, payload, ctx), ctx.timeout_s + ACTOR_GRACE_S)
