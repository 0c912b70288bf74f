"""A router's picture of its providers: the health each last reported
(carried in every reply, and pushed on changes), what only the router sees
(an actor it could not reach, a half-open trial it has in flight), the
latencies it waited for, and our own rate limit for each: this router's
bucket, a first gate that skips or waits without a round trip, and the
next free slot of the provider actor's, which holds the limit for every
router (actors/provider/pacing.py) and says it when it refuses an attempt.
The plan (policy.planning, through planner.py) is made from `candidates(now)`."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from actors.policy.health import HealthSnapshot
from actors.policy.hedging import LatencyWindow
from actors.policy.ranking import Candidate
from actors.policy.ratelimit import TokenBucket
from actors.router.quotas import QuotaViews
from actors.specs import ProviderSpec

__all__ = ["ProviderViews", "View"]


class View(msgspec.Struct):
    """The router's picture of one provider: the health the provider last
    reported, plus what only the router can see (the actor's reachability)."""

    health: HealthSnapshot = HealthSnapshot()
    unreachable_until: float | None = None
    trial_in_flight: bool = False
    back_at: float = 0.0  # when its restarted actor said it is back (provider_back)
    paced_until: float = 0.0  # the provider actor's rate limit has no slot before this (a refused attempt said)

    def rate_wait_s(self, bucket: TokenBucket | None, now: float) -> float:
        """Until a slot is free: of this router's bucket, and of the provider actor's as it last said."""
        mine = bucket.wait_s(now) if bucket is not None else 0.0
        return max(mine, self.paced_until - now, 0.0)

    def unreachable(self, sent_at: float, now: float, backoff_s: float) -> None:
        """An attempt sent at `sent_at` found the actor dead or restarting. A
        call sent to the process before a restart can fail after the new one
        said it is back (Ray reports the old one's death late): that says
        nothing of the new process, which stays in the plan."""
        if sent_at >= self.back_at:
            self.unreachable_until = now + backoff_s


class ProviderViews:
    def __init__(self, providers: Sequence[ProviderSpec]):
        self.providers = {p.name: p for p in providers}
        self.views: dict[str, View] = {p.name: View() for p in providers}
        self.latency: dict[str, LatencyWindow] = {p.name: LatencyWindow() for p in providers}
        self.buckets: dict[str, TokenBucket] = {
            p.name: TokenBucket(p.rate_limit_per_s, p.rate_limit_burst or max(1.0, p.rate_limit_per_s))
            for p in providers if p.rate_limit_per_s}
        self.quotas = QuotaViews(providers)

    @staticmethod
    def learn(view: View, health: HealthSnapshot) -> None:
        # Replies can arrive out of order; keep the newest picture.
        if (health.last_checked or 0) >= (view.health.last_checked or 0):
            view.health = health

    def health_changed(self, name: str, health: HealthSnapshot) -> None:
        if name in self.views:
            self.learn(self.views[name], health)

    def provider_back(self, name: str, now: float) -> HealthSnapshot | None:
        """A provider actor that Ray restarted says it is back: it is tried
        again at once rather than after `unreachable_backoff_s`. Returns the
        health this router last had of it (its process died, not the provider
        it talks to), for the new process to start from; None if none."""
        view = self.views.get(name)
        if view is None:
            return None
        view.unreachable_until = None
        view.back_at = now
        return view.health if view.health.total_calls else None

    def candidates(self, now: float) -> list[Candidate]:
        return [
            Candidate(name=name, index=self.providers[name].index, health=v.health,
                            unreachable_until=v.unreachable_until, trial_in_flight=v.trial_in_flight,
                            last_resort=self.providers[name].last_resort,
                            rate_wait_s=v.rate_wait_s(self.buckets.get(name), now),
                            cost=self.quotas.view(name, now))
            for name, v in self.views.items()
        ]
