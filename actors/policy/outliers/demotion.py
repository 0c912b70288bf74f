"""What a router does with the ejections of `policy.outlier` for one
request: which providers are ejected now or on probation after a return,
whether the capability is in panic (then both are ignored), and a ranking
that tries them after the rest. Pure code: `now` is passed in."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import msgspec

from actors.policy.outliers.detection import EjectionState, OutlierPolicy, in_panic, on_probation
from actors.policy.ranking import Candidate, RankPolicy, Skip
from actors.policy.skips import SkipReason

__all__ = ["Demotion", "demote", "ejection_skips", "who_to_demote"]


class Demotion(msgspec.Struct, frozen=True, kw_only=True):
    """What a router does with ejections for one request."""

    ejected: frozenset[str]     # ejected now
    demoted: frozenset[str]     # tried after the rest: `ejected` and `probation`, or nobody in panic
    panic: bool
    probation: frozenset[str] = frozenset()   # returned, not yet cleared by a judged sweep (in rotation for panic)


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


def demote(rank: RankPolicy, demoted: Collection[str]) -> RankPolicy:
    """A ranking policy that ranks as `rank` does, then moves the demoted
    providers after the others, keeping their order among themselves."""
    if not demoted:
        return rank
    names = frozenset(demoted)

    def ranked(candidates: Sequence[Candidate]) -> list[Candidate]:
        order = rank(candidates)
        return [c for c in order if c.name not in names] + [c for c in order if c.name in names]

    return ranked


def ejection_skips(r: Demotion, states: Mapping[str, EjectionState], now: float) -> list[Skip]:
    """The demoted providers as `Skip` entries for a plan's `deferred` list,
    with the typed reason; the time left is in the state (`ejected_until`)."""
    return [Skip(name, SkipReason.OUTLIER_EJECTED if states[name].ejected(now) else SkipReason.OUTLIER_PROBATION)
            for name in sorted(r.demoted)]
