"""Looking an actor up by name within a deadline.

`ray.get_actor` takes no timeout: for a name the process never looked up it
asks the cluster's GCS, and while the head node is down that call blocks
until the GCS is back or `RAY_gcs_server_request_timeout_seconds` (60 s)
pass (measured, docs/head-node.md 2.2). A caller with a 5 s deadline must not
wait 60: the lookup runs in a daemon thread of its own and the caller waits
for it only as long as it may, then gets `GcsUnavailable`. One lookup per
name is in flight at a time: a caller that tries again joins the one still
waiting on the GCS instead of starting another thread.

Used by the client's Gateway and, through actors/ops/directory.py, by the
routers and the supervisor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ray.exceptions import GetTimeoutError

from actors.errors import GcsUnavailable, NotDeployed

__all__ = ["DEFAULT_LOOKUP_S", "NameLookup"]

# A lookup the caller gave no deadline for waits this long: longer than the
# GCS takes to answer when it is up (milliseconds), shorter than Ray's 60 s.
DEFAULT_LOOKUP_S = 10.0


class NameLookup:
    """`find(name, timeout_s)`: the handle, or NotDeployed (no such name), or
    GcsUnavailable (the GCS did not answer in time)."""

    def __init__(self, ray_api: Any, namespace: str, on_found: Callable[[str, Any], None] | None = None):
        self._ray = ray_api
        self._namespace = namespace
        # Told of every handle found, before its waiter is: also of one found after its caller gave up.
        self._on_found = on_found
        self._lock = threading.Lock()
        self._pending: dict[str, Future[Any]] = {}

    def find(self, name: str, timeout_s: float | None = None) -> Any:
        future = self.start(name)
        wait = DEFAULT_LOOKUP_S if timeout_s is None else max(0.0, timeout_s)
        try:
            return future.result(timeout=wait)
        except FutureTimeout:
            raise GcsUnavailable(f"looking up {name!r} in namespace {self._namespace!r}: the cluster's GCS gave no "
                                 f"answer within {wait:.1f}s (the head node down or restarting?)") from None
        except GetTimeoutError:  # Ray's own limit (RAY_gcs_server_request_timeout_seconds) came first
            raise GcsUnavailable(f"looking up {name!r} in namespace {self._namespace!r}: the cluster's GCS gave no "
                                 "answer (the head node down or restarting?)") from None
        except ValueError:
            raise NotDeployed(f"no actor {name!r} in namespace {self._namespace!r}") from None

    def start(self, name: str) -> Future[Any]:
        """The lookup of `name` in flight (started now unless one is): its future."""
        with self._lock:
            future = self._pending.get(name)
            if future is not None and not future.done():
                return future
            future = self._pending[name] = Future()
        threading.Thread(target=self._look_up, args=(name, future), daemon=True,
                         name=f"lookup-{name}").start()
        return future

    def _look_up(self, name: str, future: Future[Any]) -> None:
        try:
            handle = self._ray.get_actor(name, namespace=self._namespace)
            if self._on_found is not None:
                self._on_found(name, handle)
            future.set_result(handle)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for it
            future.set_exception(exc)
