"""An event loop whose clock is virtual: when nothing is ready to run, it
jumps to the next timer instead of waiting for it. `asyncio.sleep`,
`asyncio.wait_for` and the loop's own timeouts all run on it, so a test of
several seconds of deadlines takes milliseconds, and the order of timers is
decided by their times, never by the machine's load.

Only for code that waits on timers and on other coroutines: work in a
thread (a SQLite store's executor) would see the clock jump while it runs.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

from actors.clock import Clock

T = TypeVar("T")

START = 1000.0


class _JumpingSelector:
    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop):
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:  # no timer at all: only another thread can wake the loop
            return self._inner.select(None)
        self._loop.now += timeout
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self._selector = _JumpingSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return self.now


def loop_clock() -> Clock:
    """The gateway's clock (actors/clock.py) on the running loop's time."""
    loop = asyncio.get_running_loop()
    return Clock(time=loop.time, monotonic=loop.time, sleep=asyncio.sleep)


def run(main: Coroutine[Any, Any, T]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
