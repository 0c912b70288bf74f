"""The actor directory: how the routers, the providers and the supervisor find
each other by name without ever blocking their event loop on the GCS.

`ray.get_actor` of a name new to the process blocks until the head's GCS
answers (up to 60 s while the head is down); it used to be called inside
async methods, so one lookup held up every call in flight on the actor. Here:

- a handle found once is kept (calls through it need no GCS: measured 100%
  answered through the head's outage); `forget(name)` drops one that died;
- a lookup runs in a thread of its own (actors/client/lookup.py) and is
  waited for at most `wait_s`; past it, `GcsUnavailable` (typed);
- once a lookup has timed out, the GCS is taken to be down: later lookups do
  not wait at all until one in flight completes (the GCS is back; its handle
  is kept then), so an outage costs the actor's loop at most one wait of
  `wait_s`;
- the outage is logged once when it starts and once when it ends.

`gcs_answers()` tells the periodic work whether to start what needs the GCS
(tasks on every node): asked off the loop, one probe in flight at a time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any

import ray

from actors.client.lookup import NameLookup
from actors.clock import SYSTEM_CLOCK, Clock
from actors.ops.cluster_nodes import NodeView, snapshot
from actors.errors import GcsUnavailable, NotDeployed

__all__ = ["DEFAULT_WAIT_S", "ActorDirectory"]

log = logging.getLogger("aicmo.directory")

# How long an actor's loop may wait for the GCS to answer a lookup before it
# takes the GCS to be down: the GCS answers in milliseconds when it is up.
DEFAULT_WAIT_S = 2.0


class ActorDirectory:
    def __init__(self, namespace: str, *, ray_api: Any = ray, wait_s: float = DEFAULT_WAIT_S,
                 clock: Clock = SYSTEM_CLOCK, owner: str = "actor"):
        self._ray = ray_api
        self._lookup = NameLookup(ray_api, namespace, on_found=self._found)
        self._handles: dict[str, Any] = {}
        self._wait_s = wait_s
        self._clock = clock
        self._owner = owner
        self._lock = threading.Lock()
        self._probe: Future[Any] | None = None
        self.down_since: float | None = None   # when a lookup first went unanswered, this outage
        self.last_nodes: list[NodeView] = []    # the alive nodes when the GCS last answered

    # --- handles -----------------------------------------------------------------------
    def actor(self, name: str) -> Any:
        """The handle of the gateway's actor `name`: kept, or looked up within
        `wait_s` (none while the GCS is known down). Raises NotDeployed or
        GcsUnavailable."""
        handle = self._handles.get(name)
        if handle is not None:
            return handle
        wait = 0.0 if self.down_since is not None else self._wait_s
        try:
            return self._lookup.find(name, wait)    # kept by _found
        except GcsUnavailable:
            self._gcs_down()
            raise

    def _found(self, name: str, handle: Any) -> None:
        """A lookup completed (in its thread), whether or not its caller still
        waits: the handle is kept and the GCS answers. (When only a caller that
        waited kept it, every lookup after one timeout, waiting 0 s, gave up on
        its own at once: a GCS slow once, on a loaded machine, failed every new
        name until the next node probe.)"""
        self._handles[name] = handle
        self._gcs_up()

    async def actor_async(self, name: str, timeout_s: float | None = None) -> Any:
        """`actor`, awaited: the loop goes on serving while the GCS is asked."""
        handle = self._handles.get(name)
        if handle is not None:
            return handle
        try:
            handle = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._lookup.start(name))),
                                            self._wait_s if timeout_s is None else timeout_s)
        except asyncio.TimeoutError:
            self._gcs_down()
            raise GcsUnavailable(f"looking up {name!r}: the cluster's GCS gave no answer (the head node down or "
                                 "restarting?)") from None
        except ValueError:
            raise NotDeployed(f"no actor {name!r}") from None
        return handle    # kept by _found

    def forget(self, name: str) -> None:
        """The actor died for good (or was replaced): look it up again next time."""
        self._handles.pop(name, None)

    # --- the GCS ---------------------------------------------------------------------
    async def gcs_answers(self, timeout_s: float | None = None) -> bool:
        """Whether the GCS answers now (a `ray.nodes()` in a thread, one at a
        time); its answer is kept in `last_nodes`."""
        with self._lock:
            if self._probe is None or self._probe.done():
                self._probe = Future()
                threading.Thread(target=self._run_probe, args=(self._probe,), daemon=True,
                                 name="gcs-probe").start()
            probe = self._probe
        try:
            nodes = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(probe)),
                                           self._wait_s if timeout_s is None else timeout_s)
        except Exception:  # noqa: BLE001 - no answer in time, or an error: the GCS does not answer
            self._gcs_down()
            return False
        self.last_nodes = snapshot(nodes)
        self._gcs_up()
        return True

    def _run_probe(self, future: Future[Any]) -> None:
        try:
            future.set_result(self._ray.nodes())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for it
            future.set_exception(exc)

    def _gcs_down(self) -> None:
        if self.down_since is None:
            self.down_since = self._clock.time()
            log.warning("%s: the cluster's GCS does not answer (the head node down or restarting?): serving on "
                        "through the handles held; lookups and node tasks wait for its return", self._owner)

    def _gcs_up(self) -> None:
        if self.down_since is not None:
            log.warning("%s: the cluster's GCS answers again after %.1fs", self._owner,
                        self._clock.time() - self.down_since)
            self.down_since = None
