"""A provider's health from what became of the mail it accepted (delivery
events, actors/events), as pure code over a snapshot: no Ray, no I/O, no
clock. A 202 says "queued"; a provider that then drops what it queued (its
account under review, its IP pool blocklisted, its own policy) stays
healthy by every synchronous measure. Here it is judged by its outcomes.

Outcomes are first sorted into a closed set (`outcome_of`):

    ok                delivered
    provider_failure  dropped for the provider's own reasons, or blocked
                      (a soft bounce of the provider's sending IP)
    None              says nothing of the provider: accepted and deferred
                      (not final), a recipient's hard bounce, a drop for the
                      recipient's sake (its suppression lists), a complaint

Then, over the last `window_s`, with at least `min_outcomes` final ones,
the share of provider failures makes the provider `degraded` (at or above
`degrade_ratio`) or `ejected` (at or above `eject_ratio`): ejected
providers are tried after the others, as outlier ejection does
(policy/outliers/demotion.py), never dropped. A provider with too few
outcomes keeps its verdict until it has enough: no data is no news.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import msgspec

from actors.events.model import DeliveryEvent

__all__ = ["DeliveryHealthPolicy", "DeliveryTransition", "DeliveryVerdict", "Outcome", "Verdict", "judge",
           "outcome_of", "outcomes_by_provider"]

Outcome = Literal["ok", "provider_failure"]
Verdict = Literal["healthy", "degraded", "ejected"]


class DeliveryHealthPolicy(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool = True
    window_s: float = 120.0
    min_outcomes: int = 10
    degrade_ratio: float = 0.1
    eject_ratio: float = 0.3
    eject_s: float = 300.0       # how long an ejection lasts before it is judged again on fresh outcomes
    interval_s: float = 2.0      # how often the router reads the events


class DeliveryVerdict(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    verdict: Verdict = "healthy"
    outcomes: int = 0            # final outcomes in the window
    failures: int = 0            # of them, the provider's failures
    since: float | None = None   # when this verdict began
    ejected_until: float | None = None
    counted_since: float | None = None  # outcomes before this (its return from an ejection) do not count

    @property
    def evidence(self) -> str:
        return (f"{self.failures} of {self.outcomes} accepted messages dropped or blocked by the provider "
                "(delivery events)")


class DeliveryTransition(msgspec.Struct, frozen=True, kw_only=True):
    """One change of verdict, as tests, logs and the audit log see it."""

    provider: str
    before: Verdict
    after: Verdict
    at: float
    evidence: str


def outcome_of(event: DeliveryEvent) -> Outcome | None:
    if event.state == "delivered":
        return "ok"
    if event.state == "dropped" and event.cause == "provider":
        return "provider_failure"
    if event.state == "bounced" and event.cause == "provider":
        return "provider_failure"
    return None


def judge(outcomes: Mapping[str, Sequence[tuple[float, Outcome]]], before: Mapping[str, DeliveryVerdict],
          now: float, policy: DeliveryHealthPolicy) -> tuple[dict[str, DeliveryVerdict], list[DeliveryTransition]]:
    """Each provider's verdict as of `now`, from its (time, outcome) pairs,
    and the transitions from `before`."""
    verdicts: dict[str, DeliveryVerdict] = {}
    transitions: list[DeliveryTransition] = []
    for name in sorted(set(outcomes) | set(before)):
        old = before.get(name, DeliveryVerdict(provider=name))
        start = max(now - policy.window_s, old.counted_since if old.counted_since is not None else float("-inf"))
        recent = [o for at, o in outcomes.get(name, ()) if start <= at <= now]
        failures = sum(1 for o in recent if o == "provider_failure")
        new = _verdict(old, len(recent), failures, now, policy)
        verdicts[name] = new
        if new.verdict != old.verdict:
            transitions.append(DeliveryTransition(provider=name, before=old.verdict, after=new.verdict, at=now,
                                                  evidence=new.evidence))
    return verdicts, transitions


def _verdict(old: DeliveryVerdict, n: int, failures: int, now: float, policy: DeliveryHealthPolicy
             ) -> DeliveryVerdict:
    if not policy.enabled:
        return DeliveryVerdict(provider=old.provider)
    if old.verdict == "ejected" and old.ejected_until is not None and now < old.ejected_until:
        # Serving its ejection: nothing new to judge it on (it is tried last).
        return msgspec.structs.replace(old, outcomes=max(old.outcomes, n), failures=max(old.failures, failures))
    if n < policy.min_outcomes:
        if old.verdict == "ejected":   # its time is over: back, degraded, until outcomes say otherwise
            return DeliveryVerdict(provider=old.provider, verdict="degraded", since=now, counted_since=now)
        return msgspec.structs.replace(old, outcomes=n, failures=failures)
    ratio = failures / n
    verdict: Verdict = ("ejected" if ratio >= policy.eject_ratio else
                        "degraded" if ratio >= policy.degrade_ratio else "healthy")
    since = old.since if verdict == old.verdict else now
    if verdict == "ejected":
        # Judged again when it returns, on what it does from then on.
        until = now + policy.eject_s
        return DeliveryVerdict(provider=old.provider, verdict=verdict, outcomes=n, failures=failures, since=since,
                               ejected_until=until, counted_since=until)
    return DeliveryVerdict(provider=old.provider, verdict=verdict, outcomes=n, failures=failures, since=since,
                           counted_since=old.counted_since)


def outcomes_by_provider(events: Iterable[tuple[str, DeliveryEvent]]) -> dict[str, list[tuple[float, Outcome]]]:
    """(provider, event) pairs as each provider's (time, outcome) list."""
    out: dict[str, list[tuple[float, Outcome]]] = {}
    for provider, event in events:
        outcome = outcome_of(event)
        if outcome is not None:
            out.setdefault(provider, []).append((event.occurred_at, outcome))
    return out
