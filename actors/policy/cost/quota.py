"""Cost and quotas, as pure code: what a call costs, what a period's spend
is, whether a provider's quota (or its live balance) is spent, and the
ranking `by_cost`.

Per provider, the config says `cost: {per_call, currency}` and
`quota: {limit, per: hour|day|month}` (actors/policy/cost/config.py).

**Periods** are calendar periods in UTC (`period_bounds`): an hour from
hh:00, a day from 00:00, a month from the 1st at 00:00 (28 to 31 days).
Spend without a quota is kept per month.

**Which calls count** (`charge_of`, one table over every error kind): a
call the provider served is `charged`; one whose fate is unknown (a
timeout, a crash mid-call, an answer we could not read, a hedge cancelled
after it was sent) `maybe` was; a refusal (5xx, 401, 429, 400, ...) or a
call never sent is `free`. Spend (money) counts charged calls only; the
quota counts charged and maybe-charged calls alike, since running past a
provider's quota costs more than stopping a few calls short of it.

**Accounting** (`account`): one `Spend` row per provider and period, with
a `lifetime_calls` counter that survives period turns (live balances are
read against it). Crossing `warn_percent` of the quota emits
`QuotaWarning`, reaching it `QuotaExhausted`, a new period `PeriodTurned`.
The wiring keeps the rows in the durable store; this is the reference
semantics its SQL must match (docs/cost-outliers-chaos.md).

**Live balances** (ZeroBounce's credits, NeverBounce's account info): a
`Balance` reading, less the calls made since it was read, at or below
`near_zero` credits is treated like a spent quota (`Exhaustion.BALANCE`).

**How cost reaches the plan**: a `Candidate` (actors/policy/candidate.py)
carries a `cost` field (a `CostView`, None when nothing is known) that every
other policy ignores. The router fills it in (the view comes from the
provider's status, see `quota_status` and `cost_view`), and the plan's first
step, `spent_quotas` (actors/policy/planning.py), leaves out a provider
whose quota is spent, whatever the ranking: a spent quota is a hard limit,
skipped with the typed reason `quota_exhausted` and never counted against
health. The ranking `by_cost` (actors/policy/ranking.py, named
`actors.policy.ranking:by_cost` in the contract, and re-exported here)
puts the cheapest first among the providers the health rules allow; a
`cost` of None has an unknown price and ranks after every priced provider
(write `per_call: 0` for a free one).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import msgspec

from actors.errors import ErrorKind
from actors.policy.candidate import Candidate, CostView, Exhaustion
from actors.policy.ranking import by_cost
from actors.policy.recommendation import Recommendation

__all__ = [
    "CHARGE_BY_KIND", "Balance", "Charge", "CostEvent", "CostPolicy", "CostView", "Exhaustion",
    "Period", "PeriodTurned", "Price", "Quota", "QuotaExhausted", "QuotaStatus", "QuotaWarning", "Spend", "account",
    "balance_left", "by_cost", "charge_of", "cost_view", "period_bounds", "quota_recommendations",
    "quota_retry_after_s", "quota_status", "rollover",
]


class Period(str, enum.Enum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"

    def __str__(self) -> str:
        return self.value


def period_bounds(per: Period, at: float) -> tuple[float, float]:
    """The UTC calendar period holding `at` (epoch seconds): [start, end)."""
    t = datetime.fromtimestamp(at, tz=timezone.utc)
    if per is Period.HOUR:
        start = t.replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
    elif per is Period.DAY:
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
    else:
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start.timestamp(), end.timestamp()


class Charge(str, enum.Enum):
    CHARGED = "charged"   # the provider served it: it costs
    MAYBE = "maybe"       # it may have reached the provider's billing
    FREE = "free"         # refused, or never sent

    def __str__(self) -> str:
        return self.value


# Every kind, so that a new kind cannot be forgotten (a test walks ErrorKind).
CHARGE_BY_KIND: dict[ErrorKind, Charge] = {
    ErrorKind.TIMEOUT: Charge.MAYBE,
    ErrorKind.CRASHED: Charge.MAYBE,
    ErrorKind.MALFORMED_RESPONSE: Charge.MAYBE,       # it answered: it likely billed
    ErrorKind.CANCELLED: Charge.MAYBE,                # a hedge that lost the race had been sent
    ErrorKind.OUTCOME_UNKNOWN: Charge.MAYBE,
    ErrorKind.TRANSIENT: Charge.FREE,
    ErrorKind.RATE_LIMITED: Charge.FREE,
    ErrorKind.AUTH: Charge.FREE,
    ErrorKind.INVALID_REQUEST: Charge.FREE,
    ErrorKind.NOT_SUPPORTED: Charge.FREE,
    ErrorKind.UNAVAILABLE: Charge.FREE,               # our actor could not be asked: never sent
    ErrorKind.UNKNOWN_METHOD: Charge.FREE,
    ErrorKind.ALL_PROVIDERS_FAILED: Charge.FREE,
    ErrorKind.DEADLINE_EXCEEDED: Charge.FREE,
    ErrorKind.NO_AVAILABLE_PROVIDER: Charge.FREE,
    ErrorKind.RETRY_BUDGET_EXHAUSTED: Charge.FREE,
    ErrorKind.STORE_UNAVAILABLE: Charge.FREE,
    ErrorKind.IDEMPOTENCY_KEY_REUSED: Charge.FREE,
    ErrorKind.SUPPRESSED: Charge.FREE,            # refused before any provider was called
    ErrorKind.GATEWAY_UNAVAILABLE: Charge.FREE,
}


def charge_of(ok: bool, error_kind: ErrorKind | None = None) -> Charge:
    """What one attempt costs, from its outcome alone."""
    if ok:
        return Charge.CHARGED
    return CHARGE_BY_KIND.get(error_kind, Charge.FREE) if error_kind is not None else Charge.FREE


class Price(msgspec.Struct, frozen=True):
    per_call: Decimal
    currency: str


class Quota(msgspec.Struct, frozen=True, kw_only=True):
    limit: int
    per: Period
    warn_percent: float = 80.0


class Spend(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's spend in one period: the durable row."""

    period_start: float
    calls: int = 0               # charged
    maybe_calls: int = 0         # maybe charged
    amount: Decimal = Decimal(0)  # charged calls at the price each was made at
    lifetime_calls: int = 0      # charged + maybe, every period: live balances are read against it

    @property
    def used(self) -> int:
        """What counts against a quota."""
        return self.calls + self.maybe_calls


class QuotaWarning(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    at: float
    used: int
    limit: int
    percent: float               # the threshold crossed
    resets_at: float


class QuotaExhausted(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    at: float
    used: int
    limit: int
    resets_at: float


class PeriodTurned(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    at: float
    previous: Spend              # the period that ended, as it ended
    period_start: float


CostEvent = QuotaWarning | QuotaExhausted | PeriodTurned


def rollover(spend: Spend, per: Period, at: float) -> tuple[Spend, list[CostEvent]]:
    """The row for the period holding `at`. A time before the row's period
    (another machine's clock a little behind) stays in the current period:
    a period never turns back."""
    start, end = period_bounds(per, spend.period_start)
    if at < end:
        return spend, []
    new_start = period_bounds(per, at)[0]
    return (Spend(period_start=new_start, lifetime_calls=spend.lifetime_calls),
            [PeriodTurned(at=at, previous=spend, period_start=new_start)])


def account(spend: Spend, charge: Charge, at: float, *, price: Price | None,
            quota: Quota | None) -> tuple[Spend, list[CostEvent]]:
    """Fold one attempt's charge into the spend, turning the period first if
    it is over. The only writer of `Spend`."""
    per = quota.per if quota is not None else Period.MONTH
    spend, events = rollover(spend, per, at)
    if charge is Charge.FREE:
        return spend, events
    charged = charge is Charge.CHARGED
    new = msgspec.structs.replace(
        spend,
        calls=spend.calls + charged,
        maybe_calls=spend.maybe_calls + (not charged),
        amount=spend.amount + (price.per_call if charged and price is not None else Decimal(0)),
        lifetime_calls=spend.lifetime_calls + 1,
    )
    if quota is not None:
        resets_at = period_bounds(quota.per, new.period_start)[1]
        warn_at = quota.limit * quota.warn_percent / 100
        if spend.used < warn_at <= new.used:
            events.append(QuotaWarning(at=at, used=new.used, limit=quota.limit, percent=quota.warn_percent,
                                       resets_at=resets_at))
        if spend.used < quota.limit <= new.used:
            events.append(QuotaExhausted(at=at, used=new.used, limit=quota.limit, resets_at=resets_at))
    return new, events


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    """A live balance read from the provider, in calls (credits)."""

    remaining: float
    at: float
    lifetime_calls_at: int       # Spend.lifetime_calls when it was read


def balance_left(balance: Balance, spend: Spend) -> float:
    """The balance as of now: the reading less the calls made since."""
    return balance.remaining - max(0, spend.lifetime_calls - balance.lifetime_calls_at)


@dataclass(frozen=True)
class CostPolicy:
    near_zero: float = 10.0      # a balance at or below this many calls is spent (calls in flight, stale reading)


class QuotaStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What `status --json` shows of a provider's cost, and what the router's
    `CostView` is built from."""

    spend: float                  # this period, in `currency` (charged calls)
    currency: str | None
    calls: int                    # charged this period
    maybe_calls: int
    period: Period
    period_start: float
    period_end: float
    quota_limit: int | None = None
    quota_left: int | None = None  # None without a quota
    balance_left: float | None = None
    exhausted: Exhaustion | None = None
    warning: bool = False         # at or past warn_percent of the quota


def quota_status(spend: Spend | None, now: float, *, price: Price | None, quota: Quota | None,
                 balance: Balance | None = None, policy: CostPolicy = CostPolicy()) -> QuotaStatus:
    per = quota.per if quota is not None else Period.MONTH
    spend, _ = rollover(spend if spend is not None else Spend(period_start=period_bounds(per, now)[0]), per, now)
    start, end = period_bounds(per, spend.period_start)
    left = max(0, quota.limit - spend.used) if quota is not None else None
    bal = balance_left(balance, spend) if balance is not None else None
    exhausted = None
    if quota is not None and spend.used >= quota.limit:
        exhausted = Exhaustion.QUOTA
    elif bal is not None and bal <= policy.near_zero:
        exhausted = Exhaustion.BALANCE
    return QuotaStatus(
        spend=float(spend.amount), currency=price.currency if price is not None else None, calls=spend.calls,
        maybe_calls=spend.maybe_calls, period=per, period_start=start, period_end=end,
        quota_limit=quota.limit if quota is not None else None, quota_left=left, balance_left=bal, exhausted=exhausted,
        warning=quota is not None and spend.used * 100 >= quota.warn_percent * quota.limit,
    )


def cost_view(status: QuotaStatus, price: Price | None) -> CostView:
    return CostView(
        per_call=float(price.per_call) if price is not None else None,
        currency=price.currency if price is not None else None,
        exhausted=status.exhausted,
        resets_at=status.period_end if status.exhausted is Exhaustion.QUOTA else None,
        quota_left=status.quota_left,
    )


def quota_retry_after_s(candidates: Sequence[Candidate], now: float) -> float | None:
    """When every real provider's quota is spent: seconds until the first
    period turns (a Retry-After). None when some provider has quota left,
    or a spent balance is all that blocks (only the next reading can tell)."""
    real = [c for c in candidates if not c.last_resort]
    views = [c.cost for c in real]
    if not real or any(v is None or v.exhausted is None for v in views):
        return None
    resets = [v.resets_at for v in views if v is not None and v.resets_at is not None]
    return max(0.0, min(resets) - now) if resets else None


def quota_recommendations(capability: str, provider: str, config_path: str, status: QuotaStatus,
                          now: float) -> list[Recommendation]:
    """What `self-check` says of a provider's quota: a warning from
    warn_percent on, critical once spent, each with the fix."""
    if status.quota_limit is None and status.exhausted is not Exhaustion.BALANCE:
        return []
    hours = max(0.0, status.period_end - now) / 3600
    if status.exhausted is Exhaustion.BALANCE:
        return [Recommendation(
            severity="critical", capability=capability, provider=provider,
            problem=f"{provider}'s balance is nearly spent: it is skipped",
            evidence=f"about {status.balance_left:.0f} calls left by its last reading",
            fix=f"buy credits from {provider}; it is used again once a reading shows more, or add another provider "
                f"under capabilities.{capability}.providers")]
    used = (status.quota_limit or 0) - (status.quota_left or 0)
    spent = f"{status.spend:.2f} {status.currency}" if status.currency else f"{status.spend:.2f}"
    evidence = (f"{used} of {status.quota_limit} calls this {status.period} ({spent}); "
                f"the period turns in {hours:.1f} h (UTC)")
    fix = (f"raise the quota with {provider} and in {config_path}.quota.limit, or add another provider under "
           f"capabilities.{capability}.providers; at its limit it is skipped until the period turns")
    quota = f"{_ADJECTIVE[status.period]} quota"
    if status.exhausted is Exhaustion.QUOTA:
        return [Recommendation(severity="critical", capability=capability, provider=provider,
                               problem=f"{provider}'s {quota} is spent: it is skipped", evidence=evidence, fix=fix)]
    if status.warning:
        return [Recommendation(severity="warning", capability=capability, provider=provider,
                               problem=f"{provider} has used most of its {quota}", evidence=evidence, fix=fix)]
    return []


_ADJECTIVE = {Period.HOUR: "hourly", Period.DAY: "daily", Period.MONTH: "monthly"}
