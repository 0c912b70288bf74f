"""A proposed change to the router, emulated through the pluggable ranking
(`routing.ranking`) so a benchmark can measure it without touching the core.

Today `plan_attempts` leaves a provider that is cooling down out of a
request's plan altogether (it is tried only when nothing else is available).
The seed tried unhealthy providers last but still tried them. Proposed: keep
them at the end of the plan, after every available provider, so they cost
an attempt only for a request that all the others failed, and a request
still gets its `max_attempts`. A provider that is really down is then tried
only by requests that would otherwise fail; one that tripped by chance
(three failures in a row at a 30% failure rate) keeps contributing.

Emulation: `by_health`, with providers still cooling down shown as DEGRADED
(and placed last), so `plan_attempts` does not skip them. A provider whose
cooldown has passed keeps its UNHEALTHY state and gets the half-open trial
as before. The wall clock is read here because a ranking policy gets no
`now`; the real change belongs in `plan_attempts`, which has it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from actors.policy.health import Health
from actors.policy.ranking import Candidate, by_health


def cooling_last(candidates: Sequence[Candidate]) -> list[Candidate]:
    now = time.time()
    ready: list[Candidate] = []
    cooling: list[Candidate] = []
    for c in by_health(candidates):
        h = c.health
        if h.state is Health.UNHEALTHY and h.cooldown_until is not None and h.cooldown_until > now:
            cooling.append(msgspec.structs.replace(
                c, health=msgspec.structs.replace(h, state=Health.DEGRADED, cooldown_until=None)))
        else:
            ready.append(c)
    return ready + cooling
