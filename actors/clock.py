"""The one clock a router reads, passed in (as Ray Serve's router takes its
clock, and tenacity its sleep): tests hand it a fake and never sleep.

Two readings, for two uses: `time()` is wall time, which provider actors in
other processes stamp on their health (`throttled_until`, `cooldown_until`,
`last_checked`) and on stored records; `monotonic()` measures deadlines and
latencies, which must not jump when the wall clock is set.
"""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SYSTEM_CLOCK", "Clock"]


@dataclass(frozen=True)
class Clock:
    time: Callable[[], float] = _time.time
    monotonic: Callable[[], float] = _time.monotonic
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep


SYSTEM_CLOCK = Clock()
