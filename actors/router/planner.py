"""A router's plan for its next request, and what it shows of it.

The one place a router takes the snapshot its plan is made from (its
picture of the providers, provider_views.py; their outlier ejections,
ejection.py; the configured ranking) and hands it to the pipeline of
policy/planning.py, which decides. From the same plan: the ranking a
client may send idempotent calls to itself (`direct_order`), the
capability's status with its providers ranked (`status`), and when a
request no provider could take may be sent again (`hint`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.clock import Clock
from actors.messages import CapabilityStatus, Operation, ProviderStatus
from actors.policy.planning import Plan, PlanInput, plan
from actors.policy.ranking import RankPolicy
from actors.policy.retry_after import RetryHint, quota_hint
from actors.router.ejection import Outliers
from actors.router.provider_views import ProviderViews

__all__ = ["Planner"]

if TYPE_CHECKING:
    from actors.router.delivery_health import DeliveryHealth


class Planner:
    def __init__(self, capability: str, seen: ProviderViews, outliers: Outliers, rank: RankPolicy, clock: Clock,
                 delivery: DeliveryHealth | None = None):
        """`delivery`: ejections on delivery outcomes (delivery_health.py): demoted by the plan's
        own step, panic or not, policy.outlier on or off."""
        self.capability = capability
        self.delivery = delivery
        self.seen = seen
        self.outliers = outliers
        self.rank = rank
        self.clock = clock

    def plan(self, now: float | None = None) -> Plan:
        """The plan a request made now would follow."""
        now = self.clock.time() if now is None else now
        delivery = {} if self.delivery is None else {n: st.ejected_until for n, st in
                                                      self.delivery.ejections(now).items()
                                                      if st.ejected_until is not None}
        return plan(PlanInput(candidates=self.seen.candidates(now), now=now, rank=self.rank,
                              ejections=self.outliers.states, outliers=self.outliers.policy,
                              delivery_ejected=delivery))

    def real_provider_available(self) -> bool:
        """Whether a real provider (not the outbox) would be tried now."""
        p = self.plan()
        return len(p.order) > p.resorts and not p.last_resort

    def hint(self) -> RetryHint:
        """When a request no provider could take may succeed if sent again."""
        now = self.clock.time()
        return quota_hint(self.seen.candidates(now), now)

    def direct_order(self) -> list[str]:
        """The providers a client may send an idempotent call to itself, most
        preferred first: those the next request would try first, leaving to
        the router any half-open trial, provider cooling down or demoted,
        provider under our rate limit (its bucket is here) and the last resort."""
        p = self.plan()
        deferred = {d.name for d in p.deferred}
        return [n for n in p.real if n != p.trial and n not in deferred and n not in self.seen.buckets]

    def status(self, statuses: dict[str, ProviderStatus], recent: list[Operation]) -> CapabilityStatus:
        """The capability's providers in the order of the plan, then those
        it leaves out, each with why; ejections and panic shown."""
        p = self.plan()
        order = [*p.order, *(s.name for s in p.skipped if s.name not in p.order)]
        status = self.outliers.annotate(CapabilityStatus(
            capability=self.capability,
            providers=[statuses[name] for name in order if name in statuses],
            recent_operations=recent,
            skipped={s.name: s.detail for s in [*p.skipped, *p.deferred]},
        ))
        return self.delivery.annotate(status) if self.delivery is not None else status
