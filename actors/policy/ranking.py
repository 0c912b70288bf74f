"""The orderings a plan can rank providers by, as pure code.

A ranking is any callable `(Sequence[Candidate]) -> list[Candidate]`, most
preferred first, named in config by its dotted path (`routing.ranking`):
`by_health` (the default), `by_cost`, `configured_order`, or a
`"module:function"` of your own. It is the `ordering` step of the plan
(policy/planning.py), which does the rest: spent quotas, outlier demotion,
who is available now, the half-open trial. A `Candidate` is defined in
policy/candidate.py (and importable from here).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence

from actors.policy.candidate import Candidate
from actors.policy.health import Health

__all__ = ["HEALTH_PRIORITY", "Candidate", "RankPolicy", "by_cost", "by_health", "configured_order",
           "load_rank_policy"]

RankPolicy = Callable[[Sequence[Candidate]], list[Candidate]]

HEALTH_PRIORITY = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNKNOWN: 2, Health.THROTTLED: 2, Health.UNHEALTHY: 3}


def by_health(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The seed's key: health, then consecutive successes, then lower latency; then configured order.

    DEGRADED ranks above UNKNOWN so that a primary that has just answered
    once is not overtaken by a backup nobody has tried.
    """

    def key(c: Candidate) -> tuple:
        h = c.health
        latency = h.latency_ewma_ms if h.latency_ewma_ms is not None else 0.0
        return (HEALTH_PRIORITY[h.state], -h.consecutive_successes, latency, c.index)

    return sorted(candidates, key=key)


def by_cost(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The cheapest provider with quota left among those the health rules
    allow, first; ties by the seed's key (`by_health`'s order). The price
    and quota are each candidate's `cost` (policy.cost makes them).

    Order: quota left before spent (spent ones are left out by the plan's
    `spent_quotas` step; here they only go last), then not UNHEALTHY before
    UNHEALTHY (the plan's `availability` step defers those cooling down and
    gives one a trial), then the price (unknown last), then by_health's order."""
    seed = {id(c): i for i, c in enumerate(by_health(candidates))}

    def key(c: Candidate) -> tuple:
        view = c.cost
        price = view.per_call if view is not None and view.per_call is not None else math.inf
        return (view is not None and view.exhausted is not None, c.health.state is Health.UNHEALTHY, price, seed[id(c)])

    return sorted(candidates, key=key)


def configured_order(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Strict priority: the listed order, whatever the health."""
    return sorted(candidates, key=lambda c: c.index)


def load_rank_policy(dotted: str) -> RankPolicy:
    """`package.module:function` or `package.module.function`."""
    module_name, _, attr = dotted.partition(":") if ":" in dotted else dotted.rpartition(".")
    try:
        policy = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"cannot load ranking policy {dotted!r}: {exc}") from None
    if not callable(policy):
        raise ValueError(f"ranking policy {dotted!r} is not callable")
    return policy
