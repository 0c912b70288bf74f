"""A router's picture of its providers' quotas: the price each costs (from
its spec) and whether its quota or balance is spent, as the provider last
said (every reply says it, a flip is pushed, `status` and the store at start
tell it too). Each candidate of the plan carries it (`Candidate.cost`), and
the plan's `spent_quotas` step (policy/planning.py) leaves a spent provider
out as `quota_exhausted` whatever the ranking, never counted against
health; a spent quota comes back by itself when its period turns
(`resets_at`), a spent balance when the provider says so. What `self-check`
says of quotas is in actors/ops/quota_findings.py."""

from __future__ import annotations

from collections.abc import Sequence

from actors.durable import StateStore
from actors.durable.store import SpendRow
from actors.messages import CallReply, ProviderStatus
from actors.policy.cost.quota import (
    Balance,
    CostPolicy,
    CostView,
    Exhaustion,
    Period,
    Spend,
    period_bounds,
    quota_status,
)
from actors.specs import ProviderSpec

__all__ = ["QuotaViews"]


class QuotaViews:
    def __init__(self, providers: Sequence[ProviderSpec]):
        self.specs = {p.name: p for p in providers}
        self.spent: dict[str, tuple[Exhaustion, float | None]] = {}   # name -> (why, resets_at)
        self.learned: set[str] = set()

    def view(self, name: str, now: float) -> CostView | None:
        spec = self.specs.get(name)
        if spec is None:
            return None
        why, resets_at = self.spent.get(name, (None, None))
        if why is Exhaustion.QUOTA and resets_at is not None and now >= resets_at:  # the period turned
            why, resets_at = None, None
        if spec.price is None and why is None:
            return None
        return CostView(per_call=float(spec.price.per_call) if spec.price is not None else None,
                        currency=spec.price.currency if spec.price is not None else None,
                        exhausted=why, resets_at=resets_at)

    def _set(self, name: str, exhausted: str | None, resets_at: float | None) -> None:
        self.learned.add(name)
        if exhausted:
            self.spent[name] = (Exhaustion(exhausted), resets_at)
        else:
            self.spent.pop(name, None)

    def learn(self, name: str, reply: CallReply) -> None:
        """From a reply: a metered provider's reply always says ("" = not spent)."""
        if reply.quota_exhausted is not None and name in self.specs:
            self._set(name, reply.quota_exhausted, reply.quota_resets_at)

    def learn_status(self, name: str, status: ProviderStatus) -> None:
        """From a status pushed on a flip, or asked for by `status`."""
        if name in self.specs and status.reachable:
            self._set(name, status.quota_exhausted, status.quota_period_end)

    async def load(self, store: StateStore, capability: str, now: float) -> None:
        """What the store says at the router's start, for providers not heard of yet."""
        rows: dict[str, list[SpendRow]] = {}
        for row in await store.spend_get(capability, now):
            rows.setdefault(row.provider, []).append(row)
        for name, spec in self.specs.items():
            if name in self.learned or name not in rows or not spec.metered:
                continue
            per = spec.quota.per if spec.quota is not None else Period.MONTH
            row = next((r for r in rows[name] if r.period == str(per)), rows[name][0])
            spend = Spend(period_start=row.period_start if row.period == str(per) and row.period_start is not None
                          else period_bounds(per, now)[0], calls=row.calls * (row.period == str(per)),
                          maybe_calls=row.maybe_calls * (row.period == str(per)), lifetime_calls=row.lifetime_calls)
            balance = (Balance(remaining=row.balance_remaining, at=row.balance_at or now,
                               lifetime_calls_at=row.balance_calls_at or 0)
                       if spec.balance.check and row.balance_remaining is not None else None)
            q = quota_status(spend, now, price=spec.price, quota=spec.quota, balance=balance,
                             policy=CostPolicy(near_zero=spec.balance.near_zero))
            if q.exhausted is not None:
                self._set(name, str(q.exhausted), q.period_end if q.exhausted is Exhaustion.QUOTA else None)
