"""The build before issue 23, measured beside this one (bench/tracing.py's
third figure: tracing off ÷ that build).

Run by path (runpy.run_path, as __main__) with PYTHONPATH and
its working directory set to a checkout of that build (bench/tracing.py
extracts one with `git archive`): the `actors` and `bench.common` it
imports are that build's, and so are its Ray workers' (Ray gives them the
driver's sys.path). It starts a private Ray of its own with the same
one-provider gateway, says READY with the file its router's `actors`
package came from (the proof of which build runs), then measures one round
per line read on stdin (the line is the round's key prefix), answering one
JSON line each; an empty line ends it.

`measure` lives here, not in bench/tracing.py, so that both builds are
measured by the very same code (this file is imported there).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

SEQUENTIAL = 200
PIPELINED = 600
IN_FLIGHT = 64
EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}
ROUTER = "router:email_sending"


def capabilities() -> dict[str, Any]:
    from bench.common import simulated

    return {"email_sending": {"providers": [simulated("sim", latency_ms=3, latency_jitter_ms=1)]}}


def measure(namespace: str, prefix: str) -> dict[str, float]:
    """One round: the p50 of sequential keyed sends, then the throughput of pipelined ones."""
    from actors.client import Gateway
    from bench.common import median

    gw = Gateway(namespace)
    latencies = []
    for i in range(SEQUENTIAL):
        t = time.perf_counter()
        assert gw.invoke("email_sending", "send_email", {**EMAIL, "subject": f"{prefix}-s{i}"},
                         idempotency_key=f"{prefix}-s{i}").ok
        latencies.append((time.perf_counter() - t) * 1000)

    async def pipelined() -> float:
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> bool:
            async with sem:
                res = await gw.invoke_async("email_sending", "send_email", {**EMAIL, "subject": f"{prefix}-t{i}"},
                                            idempotency_key=f"{prefix}-t{i}")
                return res.ok

        t = time.perf_counter()
        assert all(await asyncio.gather(*(one(i) for i in range(PIPELINED))))
        return PIPELINED / (time.perf_counter() - t)

    return {"p50_ms": median(latencies), "per_s": asyncio.run(pipelined())}


def router_module(ray: Any, namespace: str, module: str) -> str | None:
    """The file `module` was imported from in the router of `namespace`; None: not imported there."""
    router = ray.get_actor(ROUTER, namespace=namespace)

    def where(self: Any) -> str | None:
        found = sys.modules.get(module)
        return getattr(found, "__file__", None)

    return ray.get(router.__ray_call__.remote(where), timeout=60)


def serve() -> None:
    from bench.common import gateway, local_ray

    with local_ray() as ray, gateway(capabilities(), namespace="aicmo-bench-trace-before") as spec:
        measure(spec.namespace, "warm")  # the other variants are warm when measured: so is this one
        print("READY", json.dumps(router_module(ray, spec.namespace, "actors")), flush=True)
        for line in sys.stdin:
            prefix = line.strip()
            if not prefix:
                break
            print("ROUND", json.dumps(measure(spec.namespace, prefix)), flush=True)


if __name__ == "__main__":
    serve()
