"""Cost and quotas over hand-built snapshots: periods in UTC, spend
accounting, live balances, the ranking by cost and the quota skips."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import msgspec
import pytest
import yaml
from pydantic import ValidationError

from actors.errors import ErrorKind
from actors.policy.cost.config import BalanceConfig, CostConfig, QuotaConfig, currency_problems
from actors.policy.cost.quota import (
    CHARGE_BY_KIND, Balance, Charge, CostEvent, CostPolicy, CostView, Exhaustion, Period, PeriodTurned,
    Price, Quota, QuotaExhausted, QuotaWarning, Spend, account, balance_left, by_cost, charge_of, cost_view,
    period_bounds, quota_recommendations, quota_retry_after_s, quota_status, rollover,
)
from actors.policy.health import Health, HealthSnapshot
from actors.policy.planning import plan_attempts, plan_within_quota, quota_skips
from actors.policy.ranking import Candidate, by_health, load_rank_policy
from actors.policy.skips import SkipReason


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


# -- periods -----------------------------------------------------------------

@pytest.mark.parametrize("per, at, start, end", [
    (Period.HOUR, utc(2026, 12, 3, 14, 59, 59), utc(2026, 12, 3, 14), utc(2026, 12, 3, 15)),
    (Period.HOUR, utc(2026, 12, 31, 23, 30), utc(2026, 12, 31, 23), utc(2027, 1, 1)),
    (Period.DAY, utc(2026, 12, 3, 0, 0, 0), utc(2026, 12, 3), utc(2026, 12, 4)),          # the start belongs to it
    (Period.DAY, utc(2026, 2, 28, 23, 59), utc(2026, 2, 28), utc(2026, 3, 1)),
    (Period.MONTH, utc(2026, 1, 31, 12), utc(2026, 1, 1), utc(2026, 2, 1)),
    (Period.MONTH, utc(2026, 12, 15), utc(2026, 12, 1), utc(2027, 1, 1)),                # the year turns
    (Period.MONTH, utc(2028, 2, 29, 23, 59, 59), utc(2028, 2, 1), utc(2028, 3, 1)),       # a leap February
    (Period.MONTH, utc(2026, 3, 1), utc(2026, 3, 1), utc(2026, 4, 1)),
])
def test_periods_are_utc_calendar_periods(per: Period, at: float, start: float, end: float) -> None:
    assert period_bounds(per, at) == (start, end)


def test_a_period_ends_where_the_next_one_starts() -> None:
    _, end = period_bounds(Period.MONTH, utc(2026, 4, 30, 23, 59, 59))
    assert period_bounds(Period.MONTH, end) == (utc(2026, 5, 1), utc(2026, 6, 1))
    assert period_bounds(Period.MONTH, end - 0.001)[1] == end


# -- what a call costs -------------------------------------------------------------

def test_every_error_kind_has_a_charge() -> None:
    assert set(CHARGE_BY_KIND) == set(ErrorKind)


@pytest.mark.parametrize("ok, kind, charge", [
    (True, None, Charge.CHARGED), (False, ErrorKind.TIMEOUT, Charge.MAYBE), (False, ErrorKind.CANCELLED, Charge.MAYBE),
    (False, ErrorKind.TRANSIENT, Charge.FREE), (False, ErrorKind.RATE_LIMITED, Charge.FREE),
    (False, ErrorKind.UNAVAILABLE, Charge.FREE), (False, None, Charge.FREE),
])
def test_charge_of(ok: bool, kind: ErrorKind | None, charge: Charge) -> None:
    assert charge_of(ok, kind) is charge


# -- accounting ---------------------------------------------------------------------

MAY = utc(2026, 5, 10, 12)
PRICE = Price(Decimal("0.008"), "USD")
QUOTA = Quota(limit=10, per=Period.MONTH)


def run(charges: list[Charge], *, quota: Quota | None = QUOTA, start: Spend | None = None, at: float = MAY
        ) -> tuple[Spend, list[CostEvent]]:
    spend = start or Spend(period_start=period_bounds(Period.MONTH, at)[0])
    events: list[CostEvent] = []
    for i, charge in enumerate(charges):
        spend, new = account(spend, charge, at + i, price=PRICE, quota=quota)
        events += new
    return spend, events


def test_charged_calls_add_up_to_the_cent_and_maybes_count_toward_the_quota_only() -> None:
    spend, _ = run([Charge.CHARGED] * 1000 + [Charge.MAYBE] * 3 + [Charge.FREE] * 5, quota=None)
    assert spend.amount == Decimal("8.000") and spend.calls == 1000 and spend.maybe_calls == 3
    assert spend.used == 1003 and spend.lifetime_calls == 1003


def test_crossing_the_warning_and_the_limit_emits_one_event_each() -> None:
    spend, events = run([Charge.CHARGED] * 7 + [Charge.MAYBE] + [Charge.CHARGED] * 4)
    resets = utc(2026, 6, 1)
    assert events == [QuotaWarning(at=MAY + 7, used=8, limit=10, percent=80.0, resets_at=resets),
                      QuotaExhausted(at=MAY + 9, used=10, limit=10, resets_at=resets)]
    assert spend.used == 12   # calls past the limit (in flight when it was reached) still count


def test_the_period_turns_and_the_lifetime_count_goes_on() -> None:
    spend, _ = run([Charge.CHARGED] * 3)
    june = utc(2026, 6, 1, 0, 0, 1)
    new, events = account(spend, Charge.CHARGED, june, price=PRICE, quota=QUOTA)
    assert new == Spend(period_start=utc(2026, 6, 1), calls=1, amount=Decimal("0.008"), lifetime_calls=4)
    assert events == [PeriodTurned(at=june, previous=spend, period_start=utc(2026, 6, 1))]


def test_a_clock_a_little_behind_never_turns_a_period_back() -> None:
    june = Spend(period_start=utc(2026, 6, 1), calls=2)
    assert rollover(june, Period.MONTH, utc(2026, 5, 31, 23, 59, 59)) == (june, [])


def test_a_free_call_can_still_turn_the_period() -> None:
    spend, _ = run([Charge.CHARGED])
    new, events = account(spend, Charge.FREE, utc(2026, 7, 2), price=PRICE, quota=QUOTA)
    assert new.used == 0 and new.period_start == utc(2026, 7, 1) and isinstance(events[0], PeriodTurned)


def test_events_round_trip_as_a_tagged_union() -> None:
    _, events = run([Charge.CHARGED] * 10)
    assert msgspec.json.decode(msgspec.json.encode(events), type=list[CostEvent]) == events


# -- quota status and live balances ----------------------------------------------------

def test_status_without_a_quota_is_this_months_spend() -> None:
    spend, _ = run([Charge.CHARGED] * 5, quota=None)
    s = quota_status(spend, MAY + 60, price=PRICE, quota=None)
    assert s.spend == pytest.approx(0.04) and s.currency == "USD" and s.period is Period.MONTH
    assert s.quota_left is None and s.quota_limit is None and s.exhausted is None and not s.warning
    assert (s.period_start, s.period_end) == (utc(2026, 5, 1), utc(2026, 6, 1))


def test_status_with_a_quota() -> None:
    spend, _ = run([Charge.CHARGED] * 8)
    s = quota_status(spend, MAY + 60, price=PRICE, quota=QUOTA)
    assert s.quota_left == 2 and s.warning and s.exhausted is None
    spent = quota_status(run([Charge.CHARGED] * 10)[0], MAY + 60, price=PRICE, quota=QUOTA)
    assert spent.quota_left == 0 and spent.exhausted is Exhaustion.QUOTA


def test_status_after_the_period_turned_starts_afresh() -> None:
    spend, _ = run([Charge.CHARGED] * 10)
    s = quota_status(spend, utc(2026, 6, 2), price=PRICE, quota=QUOTA)
    assert s.quota_left == 10 and s.exhausted is None and s.spend == 0.0 and s.period_start == utc(2026, 6, 1)


def test_status_of_a_provider_never_called() -> None:
    s = quota_status(None, MAY, price=None, quota=Quota(limit=5, per=Period.DAY))
    assert s.quota_left == 5 and s.spend == 0.0 and s.currency is None and s.period_end == utc(2026, 5, 11)


def test_a_balance_is_read_against_the_calls_made_since() -> None:
    spend, _ = run([Charge.CHARGED] * 4, quota=None)
    reading = Balance(remaining=50, at=MAY, lifetime_calls_at=1)
    assert balance_left(reading, spend) == 47


def test_a_balance_near_zero_is_a_spent_quota() -> None:
    spend, _ = run([Charge.CHARGED] * 4, quota=None)
    low = quota_status(spend, MAY, price=PRICE, quota=None, balance=Balance(remaining=14, at=MAY, lifetime_calls_at=0))
    assert low.balance_left == 10 and low.exhausted is Exhaustion.BALANCE
    fine = quota_status(spend, MAY, price=PRICE, quota=None, balance=Balance(remaining=14, at=MAY, lifetime_calls_at=0),
                        policy=CostPolicy(near_zero=5))
    assert fine.exhausted is None


def test_the_quota_is_named_before_the_balance_when_both_are_spent() -> None:
    spend, _ = run([Charge.CHARGED] * 10)
    s = quota_status(spend, MAY, price=PRICE, quota=QUOTA, balance=Balance(remaining=0, at=MAY, lifetime_calls_at=10))
    assert s.exhausted is Exhaustion.QUOTA


def test_cost_view() -> None:
    spent = quota_status(run([Charge.CHARGED] * 10)[0], MAY, price=PRICE, quota=QUOTA)
    assert cost_view(spent, PRICE) == CostView(per_call=0.008, currency="USD", exhausted=Exhaustion.QUOTA,
                                               resets_at=utc(2026, 6, 1), quota_left=0)
    assert cost_view(quota_status(None, MAY, price=None, quota=None), None) == CostView()


# -- ranking and skipping ----------------------------------------------------------------

NOW = MAY


def cand(name: str, index: int, price: float | None = None, *, state: Health = Health.HEALTHY, successes: int = 5,
         exhausted: Exhaustion | None = None, resets_at: float | None = None, plain: bool = False,
         last_resort: bool = False, **health) -> Candidate:
    snap = HealthSnapshot(state=state, consecutive_successes=successes, **health)
    if plain:
        return Candidate(name=name, index=index, health=snap, last_resort=last_resort)
    view = CostView(per_call=price, currency="USD" if price is not None else None, exhausted=exhausted, resets_at=resets_at)
    return Candidate(name=name, index=index, health=snap, cost=view, last_resort=last_resort)


def names(cs) -> list[str]:
    return [c.name for c in cs]


def test_the_cheapest_goes_first() -> None:
    assert names(by_cost([cand("dear", 0, 0.01), cand("cheap", 1, 0.002), cand("mid", 2, 0.005)])) == ["cheap", "mid", "dear"]


def test_among_providers_the_health_rules_allow() -> None:
    cs = [cand("dear", 0, 0.01), cand("cheap_sick", 1, 0.001, state=Health.UNHEALTHY, successes=0),
          cand("cheap_new", 2, 0.002, state=Health.UNKNOWN, successes=0)]
    assert names(by_cost(cs)) == ["cheap_new", "dear", "cheap_sick"]


def test_a_spent_quota_goes_last_and_an_unknown_price_after_every_known_one() -> None:
    cs = [cand("spent", 0, 0.001, exhausted=Exhaustion.QUOTA), cand("unpriced", 1), cand("plain", 2, plain=True),
          cand("dear", 3, 0.05), cand("free", 4, 0.0)]
    assert names(by_cost(cs)) == ["free", "dear", "unpriced", "plain", "spent"]


def test_ties_by_the_seeds_key() -> None:
    cs = [cand("a", 0, 0.01, successes=2), cand("b", 1, 0.01, successes=9), cand("c", 2, 0.01, successes=9,
                                                                                   latency_ewma_ms=5.0)]
    assert names(by_cost(cs)) == names(by_health(cs)) == ["b", "c", "a"]


def test_by_cost_is_a_rank_policy() -> None:
    # every path a config could name for it: the contract's, the old module's, the new module's
    assert load_rank_policy("actors.policy.ranking:by_cost") is by_cost
    assert load_rank_policy("actors.policy.cost:by_cost") is by_cost
    assert load_rank_policy("actors.policy.cost.quota:by_cost") is by_cost
    plan = plan_attempts([cand("dear", 0, 0.01), cand("cheap", 1, 0.002)], NOW, rank=by_cost)
    assert plan.order == ["cheap", "dear"]


def test_a_spent_quota_is_skipped_with_its_typed_reason_under_any_ranking() -> None:
    cs = [cand("spent", 0, 0.001, exhausted=Exhaustion.QUOTA, resets_at=NOW + 60), cand("dear", 1, 0.01),
          cand("outbox", 2, plain=True, last_resort=True)]
    for rank in (by_health, by_cost):
        plan = plan_within_quota(cs, NOW, rank)
        assert plan.order == ["dear", "outbox"]
        [skip] = plan.skipped
        assert skip.name == "spent" and skip.reason is SkipReason.QUOTA_EXHAUSTED and skip.reason == "quota_exhausted"


def test_quota_skips_leave_the_rest_and_the_outbox_alone() -> None:
    outbox = cand("outbox", 2, exhausted=Exhaustion.QUOTA, last_resort=True)
    kept, skipped = quota_skips([cand("a", 0, 0.01), cand("low", 1, 0.01, exhausted=Exhaustion.BALANCE), outbox])
    assert names(kept) == ["a", "outbox"] and [s.name for s in skipped] == ["low"]


def test_without_spent_quotas_the_plan_is_plan_attempts() -> None:
    cs = [cand("a", 0, 0.01), cand("b", 1, 0.02, state=Health.UNHEALTHY, successes=0, cooldown_until=NOW + 5)]
    assert plan_within_quota(cs, NOW, by_cost) == plan_attempts(cs, NOW, by_cost)


def test_other_skips_follow_the_quota_skips() -> None:
    cs = [cand("spent", 0, 0.001, exhausted=Exhaustion.QUOTA), cand("throttled", 1, 0.01, throttled_until=NOW + 5),
          cand("ok", 2, 0.02)]
    plan = plan_within_quota(cs, NOW, by_cost)
    assert plan.order == ["ok"] and [s.name for s in plan.skipped] == ["spent", "throttled"]


def test_retry_after_when_every_quota_is_spent() -> None:
    both = [cand("a", 0, 0.01, exhausted=Exhaustion.QUOTA, resets_at=NOW + 300),
            cand("b", 1, 0.01, exhausted=Exhaustion.QUOTA, resets_at=NOW + 60), cand("o", 2, plain=True, last_resort=True)]
    assert quota_retry_after_s(both, NOW) == 60
    assert quota_retry_after_s([both[0], cand("c", 1, 0.01)], NOW) is None
    assert quota_retry_after_s([cand("low", 0, exhausted=Exhaustion.BALANCE)], NOW) is None
    assert quota_retry_after_s([cand("p", 0, plain=True)], NOW) is None
    assert quota_retry_after_s([], NOW) is None


# -- self-check ------------------------------------------------------------------------------

def test_self_check_is_quiet_below_the_warning() -> None:
    s = quota_status(run([Charge.CHARGED] * 7)[0], MAY, price=PRICE, quota=QUOTA)
    assert quota_recommendations("email_verification", "zb", "capabilities.email_verification.providers[0]", s, MAY) == []
    assert quota_recommendations("c", "p", "x", quota_status(None, MAY, price=None, quota=None), MAY) == []


def test_self_check_warns_at_80_percent_and_names_the_fix() -> None:
    s = quota_status(run([Charge.CHARGED] * 8)[0], MAY, price=PRICE, quota=QUOTA)
    [rec] = quota_recommendations("email_verification", "zb", "capabilities.email_verification.providers[0]", s, MAY)
    assert rec.severity == "warning" and rec.problem == "zb has used most of its monthly quota"
    assert "8 of 10 calls this month (0.06 USD)" in rec.evidence
    assert "capabilities.email_verification.providers[0].quota.limit" in rec.fix


def test_self_check_is_critical_once_spent() -> None:
    s = quota_status(run([Charge.CHARGED] * 10, quota=Quota(limit=10, per=Period.DAY))[0], MAY, price=PRICE,
                     quota=Quota(limit=10, per=Period.DAY))
    [rec] = quota_recommendations("c", "zb", "capabilities.c.providers[1]", s, MAY)
    assert rec.severity == "critical" and "daily quota is spent" in rec.problem and "12.0 h" in rec.evidence


def test_self_check_on_a_low_balance() -> None:
    s = quota_status(None, MAY, price=PRICE, quota=None, balance=Balance(remaining=3, at=MAY, lifetime_calls_at=0))
    [rec] = quota_recommendations("c", "nb", "capabilities.c.providers[0]", s, MAY)
    assert rec.severity == "critical" and "balance" in rec.problem and "about 3 calls left" in rec.evidence


# -- config --------------------------------------------------------------------------------------

def test_a_price_is_read_as_written() -> None:
    cost = CostConfig.model_validate(yaml.safe_load("{per_call: 0.008, currency: USD}"))
    assert cost.per_call == Decimal("0.008") and cost.to_price() == PRICE
    assert CostConfig(per_call=Decimal("0.1")).currency == "USD"


def test_quota_and_balance_config() -> None:
    assert QuotaConfig.model_validate({"limit": 10000, "per": "month"}).to_quota() == Quota(limit=10000, per=Period.MONTH)
    assert BalanceConfig().to_policy() == CostPolicy()


@pytest.mark.parametrize("model, raw, where", [
    (CostConfig, {"per_call": -1}, "per_call"),
    (CostConfig, {"per_call": 0.1, "currency": "usd"}, "currency"),
    (CostConfig, {"currency": "USD"}, "per_call"),
    (QuotaConfig, {"limit": 10, "per": "week"}, "per"),
    (QuotaConfig, {"limit": 0, "per": "day"}, "limit"),
    (QuotaConfig, {"limit": 5, "per": "day", "reset": "monday"}, "reset"),
])
def test_invalid_config_is_refused(model, raw: dict, where: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(raw)
    assert where in str(info.value)


def test_one_currency_per_capability() -> None:
    assert currency_problems({"a": CostConfig(per_call=Decimal(1)), "b": None, "c": CostConfig(per_call=Decimal(2))}) == []
    [problem] = currency_problems({"a": CostConfig(per_call=Decimal(1)), "b": CostConfig(per_call=Decimal(1), currency="EUR")})
    assert "a: USD, b: EUR" in problem
