"""Operator hooks: `on_success`, `on_failure`, `on_health_change`.

Configured by dotted path (`package.module:function`, or
`package.module.function`), top-level and per capability (both run):

    hooks:
      on_failure: mycompany.alerts:page_on_failure
      on_health_change: [mycompany.alerts:post_to_chat]
      timeout_s: 5
    capabilities:
      email_sending:
        hooks: {on_success: mycompany.crm:mark_sent}

What each gets, one frozen argument:

| hook | runs in | argument |
| --- | --- | --- |
| `on_success(decision)` | the capability's router | `actors.messages.Decision` of a request that succeeded (replays and dry runs included, flagged) |
| `on_failure(decision)` | the capability's router | `Decision` of a request that failed (`error_kind`, `error`, every attempt) |
| `on_health_change(change)` | the provider's actor | `HealthChange`: capability, provider, old, new, at, and the full `ProviderStatus` |

A `Decision` holds the request's idempotency key as given (hooks run inside
the gateway, like its own code) but never the payload.

Hooks run off the request's path: the router only puts the call on a
bounded queue, and one background task runs them in order, each with
`timeout_s` (a plain function runs in a small thread pool of its own; an
`async def` runs on the actor's loop). A hook that raises or times out is
logged with its name and counted (`aicmo_hook_calls_total`, the supervisor's
self-check); the request it was called for has already been answered. When
the queue is full, new calls are dropped and counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from actors.errors import HookError
from actors.messages import ProviderStatus
from actors.policy.health import Health

__all__ = ["EVENTS", "HealthChange", "HookRunner", "HookStats", "load_hook"]

log = logging.getLogger("aicmo.hooks")

EVENTS = ("on_success", "on_failure", "on_health_change")


class HealthChange(msgspec.Struct, frozen=True, kw_only=True):
    """What `on_health_change` hooks get."""

    at: float
    capability: str
    provider: str
    old: Health
    new: Health
    status: ProviderStatus


class HookStats(msgspec.Struct, kw_only=True):
    calls: int = 0
    failures: int = 0
    timeouts: int = 0
    last_error: str | None = None



def load_hook(path: str) -> Callable[[Any], Any]:
    """`package.module:function` (or `package.module.function`) to the callable."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise HookError(f"{path!r} is not a dotted path like 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the hook's problem
        raise HookError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HookError(f"{module_name!r} has no {attr!r}") from None
    if not callable(target):
        raise HookError(f"{path!r} is not callable")
    return target


def _is_async(fn: Any) -> bool:
    # A callable object's __call__ is inspected for `async def`, not for existence.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(type(fn), "__call__", None))  # noqa: B004


class HookRunner:
    """Runs one actor's hooks. `submit` is all the request path does."""

    def __init__(self, hooks: dict[str, list[str]], *, owner: str, timeout_s: float = 5.0, queue_size: int = 10000,
                 loader: Callable[[str], Callable[[Any], Any]] = load_hook,
                 on_result: Callable[[str, str, str], None] | None = None):
        self.owner = owner
        self.timeout_s = timeout_s
        self.queue_size = queue_size
        self.stats: dict[str, HookStats] = {}
        self.load_errors: dict[str, str] = {}
        self.dropped = 0
        self._on_result = on_result  # (event, hook, outcome): for metrics
        self._hooks: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {}
        for event, paths in hooks.items():
            for path in paths:
                try:
                    fn = loader(path)
                except Exception as exc:  # noqa: BLE001
                    self.load_errors[path] = str(exc)
                    log.error("%s: hook %s (%s) cannot be loaded: %s", owner, path, event, exc)
                    continue
                self._hooks.setdefault(event, []).append((path, fn))
                self.stats.setdefault(path, HookStats())
        self._queue: asyncio.Queue[tuple[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def wants(self, event: str) -> bool:
        return bool(self._hooks.get(event))

    @property
    def active(self) -> bool:
        return bool(self._hooks)

    def submit(self, event: str, arg: Any) -> None:
        """Queue the event's hooks; never blocks, never raises."""
        if not self._hooks.get(event):
            return
        if self._queue is None:
            try:
                self._start()
            except RuntimeError:  # no running loop: nothing can run it
                self.dropped += 1
                return
        assert self._queue is not None
        try:
            self._queue.put_nowait((event, arg))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("%s: hook queue full (%d waiting): %d hook calls dropped so far",
                            self.owner, self.queue_size, self.dropped)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._task = loop.create_task(self._worker())

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            event, arg = await self._queue.get()
            for path, fn in self._hooks.get(event, []):
                await self.call(event, path, fn, arg)
            self._queue.task_done()

    async def call(self, event: str, path: str, fn: Callable[[Any], Any], arg: Any) -> bool:
        stats = self.stats.setdefault(path, HookStats())
        stats.calls += 1
        outcome = "ok"
        try:
            if _is_async(fn):
                await asyncio.wait_for(fn(arg), self.timeout_s)
            else:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="aicmo-hook")
                loop = asyncio.get_running_loop()
                await asyncio.wait_for(loop.run_in_executor(self._pool, fn, arg), self.timeout_s)
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:
            outcome = "timeout"
            stats.failures += 1
            stats.timeouts += 1
            stats.last_error = f"took longer than {self.timeout_s:g}s"
            log.warning("%s: hook %s (%s) took longer than %gs: abandoned", self.owner, path, event, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a hook must never break anything
            outcome = "error"
            stats.failures += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("%s: hook %s (%s) raised %s: %s", self.owner, path, event, type(exc).__name__, exc,
                        exc_info=True)
        if self._on_result is not None:
            try:
                self._on_result(event, path, outcome)
            except Exception:  # noqa: BLE001
                pass
        return outcome == "ok"

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued call has run (tests, shutdown)."""
        if self._queue is not None:
            await asyncio.wait_for(self._queue.join(), timeout_s)

    def report(self) -> dict[str, Any]:
        return {"hooks": {p: msgspec.to_builtins(s) for p, s in self.stats.items()}, "load_errors": dict(self.load_errors),
                "dropped": self.dropped, "queued": self._queue.qsize() if self._queue is not None else 0}
