"""Hooks used by the tests, loaded by dotted path (`tests.ops.sample_hooks:...`).

In-process tests read `CALLS`; on Ray, `to_collector` hands each call to a
named actor the test creates and asks (`hook-collector` in the namespace
`aicmo-hook-tests`: a hook is not told its gateway's namespace)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

CALLS: list[tuple[str, Any]] = []
COLLECTOR, COLLECTOR_NAMESPACE = "hook-collector", "aicmo-hook-tests"


def record_success(decision: Any) -> None:
    CALLS.append(("success", decision))


async def record_failure(decision: Any) -> None:
    await asyncio.sleep(0)
    CALLS.append(("failure", decision))


def explode(arg: Any) -> None:
    raise RuntimeError("the hook's own bug")


def too_slow(arg: Any) -> None:
    time.sleep(0.5)
    CALLS.append(("slow", arg))


def _collector() -> Any:
    import ray

    return ray.get_actor(COLLECTOR, namespace=COLLECTOR_NAMESPACE)


def to_collector(arg: Any) -> None:
    """Runs in a router or provider actor: pass the argument on, as plain data."""
    import msgspec
    import ray

    ray.get(_collector().add.remote(type(arg).__name__, msgspec.to_builtins(arg)), timeout=30)
