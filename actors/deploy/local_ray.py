"""Starting a private local Ray for the demo and the benchmarks, sized for a gateway.

Ray's raylet warns "N PYTHON worker processes have been started on node ...,
which is Kx the maximum expected startup concurrency (C)" once the worker
processes it started reach 4 times C (src/ray/raylet/worker_pool.cc,
`WarnAboutSize`). C is `RAY_worker_maximum_startup_concurrency` when set,
else min(cpu_count, num_cpus) (ray/_private/services.py): 2 on a 2-core
machine, so a gateway of 8 actors or more, each an actor with a worker
process of its own, trips it on every first run although nothing is wrong.

`startup_concurrency(n)` is a C for which the workers a gateway of `n`
actors needs stay under the warning (with room for probe tasks and the
driver's own), and `init_local` starts the cluster with it: set in the
environment the raylet inherits, unless the user set it. C is also how many
workers the raylet starts at once; on a small machine that only changes the
order in which the same actors come up.
"""

from __future__ import annotations

import math
import os
from typing import Any

__all__ = ["ENV", "WARN_AT_MULTIPLE", "init_local", "startup_concurrency"]

ENV = "RAY_worker_maximum_startup_concurrency"
WARN_AT_MULTIPLE = 4   # worker_pool.cc: warn when workers >= 4 x the startup concurrency
SPARE_WORKERS = 16     # probe tasks per node, the driver's tasks, a restarted actor's new worker


def startup_concurrency(actors: int, cpus: int | None = None) -> int:
    """The smallest C (never below Ray's own default) at which `actors` actors
    plus spare workers stay below the warning's threshold."""
    default = max(1, min(os.cpu_count() or 1, cpus or os.cpu_count() or 1))
    needed = math.floor((actors + SPARE_WORKERS) / WARN_AT_MULTIPLE) + 1
    return max(default, needed)


def init_local(ray: Any, *, actors: int, num_cpus: int, **kwargs: Any) -> Any:
    """`ray.init(address="local", ...)` for a gateway of about `actors` actors."""
    chosen = os.environ.get(ENV) or str(startup_concurrency(actors, num_cpus))
    previous = os.environ.get(ENV)
    os.environ[ENV] = chosen  # the raylet reads it when it starts, from the environment it inherits
    try:
        return ray.init(address="local", num_cpus=num_cpus, **kwargs)
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
