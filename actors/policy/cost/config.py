"""The config of a provider's cost, quota and live balance, as pydantic
models at the edge; `to_price()`, `to_quota()` and `to_policy()` give what
the pure code in actors/policy/cost/quota.py reads.

    capabilities:
      email_verification:
        policy: {routing: {ranking: actors.policy.ranking:by_cost}}
        providers:
          - name: zerobounce
            adapter: zerobounce
            cost: {per_call: 0.008, currency: USD}
            quota: {limit: 10000, per: month}      # warn_percent: 80
            balance: {check: true, near_zero: 10}  # where the adapter can read one

Amounts are decimals (`0.008` is read as written, not as the nearest
binary float), so a month of calls adds up to the cent.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from actors.policy.cost.quota import CostPolicy, Period, Price, Quota

__all__ = ["BalanceConfig", "CostConfig", "QuotaConfig", "currency_problems"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CostConfig(_Model):
    per_call: Decimal = Field(ge=0, max_digits=18, decimal_places=9, description="what one call costs (0: free)")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD, EUR")

    def to_price(self) -> Price:
        return Price(self.per_call, self.currency)


class QuotaConfig(_Model):
    limit: int = Field(ge=1, description="calls allowed per period (charged ones, and those that may have been)")
    per: Period = Field(description="hour, day or month: a UTC calendar period")
    warn_percent: float = Field(80.0, gt=0, le=100, description="self-check warns from this share of the quota on")

    def to_quota(self) -> Quota:
        return Quota(limit=self.limit, per=self.per, warn_percent=self.warn_percent)


class BalanceConfig(_Model):
    check: bool = Field(True, description="read the provider's live balance, where its adapter can")
    near_zero: float = Field(10.0, ge=0, description="a balance at or below this many calls counts as a spent quota")
    interval_s: float = Field(300.0, gt=0, description="how often the balance is read")

    def to_policy(self) -> CostPolicy:
        return CostPolicy(near_zero=self.near_zero)


def currency_problems(costs: Mapping[str, CostConfig | None]) -> list[str]:
    """Prices in different currencies cannot be compared without exchange
    rates, which the gateway does not hold: a capability ranked by cost must
    price its providers in one currency. Returns the problem, if any."""
    currencies = sorted({c.currency for c in costs.values() if c is not None})
    if len(currencies) <= 1:
        return []
    by = ", ".join(f"{name}: {c.currency}" for name, c in costs.items() if c is not None)
    return [f"providers are priced in several currencies ({by}); by_cost needs one"]
