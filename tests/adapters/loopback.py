"""What the tests of the crm_sync, lead_enrichment and email_verification
stand-ins share (no Ray): the clock the stand-ins read, running adapters on
an event loop of their own, making adapters against a runner's stand-ins,
and the fixture that gives each test fresh stand-ins and a new day."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.adapters.crm.airtable import AirtableAdapter
from actors.adapters.crm.hubspot import HubSpotAdapter
from actors.sandbox.base import Faults, SandboxRunner
from tests.adapters.recorder import make

KEY = "stand-in-key-123"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


CLOCK = Clock()
CREATED: list[Any] = []     # adapters made here: their clients are closed at the end of each run()


def run(coro: Any) -> Any:
    """Each run has its own event loop, so the adapters' connections are closed before it ends."""
    async def main() -> Any:
        try:
            return await coro
        finally:
            for a in CREATED:
                await a.close()

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def fresh(sandbox):
    for stand_in in sandbox.stand_ins.values():
        stand_in.faults = Faults()
        stand_in.received.clear()
        stand_in.reset()
    CLOCK.now += 86400          # a new day: every window and penalty is over
    yield
    CREATED.clear()


def adapter(cls: type, sandbox: SandboxRunner, capability: str | None = None, **settings: Any) -> Any:
    secret = {"token": KEY} if cls in (AirtableAdapter, HubSpotAdapter) else {"api_key": KEY}
    made = make(cls, None, capability=capability, base_url=sandbox.url(cls.name), **{**secret, **settings})
    CREATED.append(made)
    return made


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)
