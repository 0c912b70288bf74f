"""The supervisor's periodic jobs (self-checks, draining, sampling, gauges,
pruning): each step run every `interval_s` plus up to `jitter_s`, for the
actor's life; a round that fails is logged, not fatal. Sleep and the
jitter's randomness are passed in."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from actors.clock import Clock

__all__ = ["Job", "PeriodicJobs"]

log = logging.getLogger("aicmo.supervisor")


class Job(NamedTuple):
    interval_s: float                  # 0: the job is off
    step: Callable[[], Any]            # a function or a coroutine function
    what: str                          # for the log, when a round fails
    jitter_s: float = 0.0


class PeriodicJobs:
    def __init__(self, clock: Clock, rng: random.Random):
        self._clock = clock
        self._random = rng
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    def start(self, jobs: Sequence[Job]) -> None:
        """Starts each job that is on, on the running loop."""
        loop = asyncio.get_running_loop()
        for job in jobs:
            if job.interval_s > 0:
                self._tasks.append(loop.create_task(self._repeat(job)))

    async def _repeat(self, job: Job) -> None:
        while True:
            await self._clock.sleep(job.interval_s + (self._random.uniform(0, job.jitter_s) if job.jitter_s else 0.0))
            try:
                result = job.step()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round
                log.exception("%s failed", job.what)
