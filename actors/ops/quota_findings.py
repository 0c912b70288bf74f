"""What `self-check` says of each provider's quota and balance, from the
status each provider reported (the supervisor calls it; the wording of each
finding is `cost.quota_recommendations`)."""

from __future__ import annotations

from collections.abc import Sequence

from actors.messages import ProviderStatus, Recommendation
from actors.policy.cost.quota import Exhaustion, Period, QuotaStatus, period_bounds, quota_recommendations
from actors.specs import ProviderSpec

__all__ = ["quota_checks"]


def quota_checks(providers: Sequence[ProviderSpec], statuses: dict[str, ProviderStatus],
                 now: float) -> list[Recommendation]:
    """What `self-check` says of each provider's quota and balance
    (`cost.quota_recommendations`): a warning from warn_percent (80%) of a
    quota on, critical once spent or the balance is near zero, each with its fix."""
    out: list[Recommendation] = []
    for spec in providers:
        s = statuses.get(spec.name)
        if s is None or not s.reachable or (s.quota_limit is None and s.balance_left is None):
            continue
        per = spec.quota.per if spec.quota is not None else Period.MONTH
        used = (s.quota_limit or 0) - (s.quota_left or 0)
        warn = spec.quota is not None and used * 100 >= spec.quota.warn_percent * spec.quota.limit
        start, end = period_bounds(per, now)
        status = QuotaStatus(spend=s.spend, currency=s.currency, calls=used, maybe_calls=0, period=per,
                             period_start=start, period_end=s.quota_period_end or end, quota_limit=s.quota_limit,
                             quota_left=s.quota_left, balance_left=s.balance_left,
                             exhausted=Exhaustion(s.quota_exhausted) if s.quota_exhausted else None, warning=warn)
        out += quota_recommendations(spec.capability, spec.name, spec.config_path, status, now)
    return out
