"""What a router does with the ejections of `policy.outlier` for one
request: which providers are ejected now or on probation after a return,
whether the capability is in panic (then both are ignored), and the order
that tries them after the rest. Pure code: `now` is passed in.

The plan's `outlier_demotion` step (policy/planning.py) is made of these."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TypeVar

import msgspec

from actors.policy.health import Health
from actors.policy.outliers.detection import EjectionState, OutlierPolicy, in_panic, on_probation
from actors.policy.candidate import Candidate
from actors.policy.ranking import RankPolicy
from actors.policy.skips import Skip, SkipReason

__all__ = ["Demotion", "after_the_rest", "demote", "ejection_detail", "ejection_skips", "unavailable",
           "who_to_demote"]

T = TypeVar("T", bound=Candidate)


class Demotion(msgspec.Struct, frozen=True, kw_only=True):
    """What a router does with ejections for one request."""

    ejected: frozenset[str]     # ejected now
    demoted: frozenset[str]     # tried after the rest: `ejected` and `probation`, or nobody in panic
    panic: bool
    probation: frozenset[str] = frozenset()   # returned, not yet cleared by a judged sweep (in rotation for panic)


def unavailable(candidates: Sequence[Candidate], now: float) -> set[str]:
    """Out for their health: unhealthy (cooling down or on trial) or an actor not reached."""
    return {c.name for c in candidates
            if c.health.state is Health.UNHEALTHY or (c.unreachable_until is not None and c.unreachable_until > now)}


def who_to_demote(states: Mapping[str, EjectionState], now: float, unavailable: Collection[str],
                  policy: OutlierPolicy) -> Demotion:
    """Ejections as of `now` (an ejection may have ended since the last
    sweep), and whether the capability is in panic: then they are ignored.
    `states` holds every real provider of the capability (not the outbox);
    `unavailable` names those out for their health."""
    if not policy.enabled:
        return Demotion(ejected=frozenset(), demoted=frozenset(), panic=False)
    ejected = frozenset(n for n, st in states.items() if st.ejected(now))
    # An ejection over since the last sweep: on probation from now (the sweep will say so).
    probation = (on_probation(states) | {n for n, st in states.items() if st.ejected_until is not None} - ejected
                 if policy.probation else frozenset())
    out = len(ejected | (set(unavailable) & set(states)))
    panic = in_panic(len(states), out, policy)
    return Demotion(ejected=ejected, demoted=frozenset() if panic else ejected | probation, panic=panic,
                        probation=frozenset(probation))


def after_the_rest(order: Sequence[T], demoted: Collection[str]) -> list[T]:
    """`order` with the demoted providers moved after the others, each
    group keeping its order."""
    return [c for c in order if c.name not in demoted] + [c for c in order if c.name in demoted]


def demote(rank: RankPolicy, demoted: Collection[str]) -> RankPolicy:
    """A ranking policy that ranks as `rank` does, then moves the demoted
    providers after the others (`after_the_rest`)."""
    if not demoted:
        return rank
    names = frozenset(demoted)

    def ranked(candidates: Sequence[Candidate]) -> list[Candidate]:
        return after_the_rest(rank(candidates), names)

    return ranked


def ejection_detail(state: EjectionState, now: float) -> str:
    """Why a demoted provider is tried after the rest, in words (status, the audit log)."""
    if not state.ejected(now):
        return f"on probation after an ejection ({state.reason}): tried after the rest until a sweep clears it"
    return f"ejected ({state.reason}) for {max(0.0, (state.ejected_until or now) - now):.0f}s more: tried after the rest"


def ejection_skips(r: Demotion, states: Mapping[str, EjectionState], now: float) -> list[Skip]:
    """The demoted providers as `Skip` entries for a plan's `deferred` list,
    with the typed reason and the time left in words."""
    return [Skip(name, SkipReason.OUTLIER_EJECTED if states[name].ejected(now) else SkipReason.OUTLIER_PROBATION,
                 ejection_detail(states[name], now))
            for name in sorted(r.demoted)]
