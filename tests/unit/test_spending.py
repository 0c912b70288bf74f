"""Cost and quotas in the runtime, without Ray: provider cores metering
their spend into a real SQLite store, a router core planning over them
(actors/provider/spending.py, actors/router/quotas.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.clock import Clock as RouterClock
from actors.config import parse_config
from actors.durable.sqlite import SqliteStore
from actors.errors import ConfigError, ErrorKind, TransientError
from actors.messages import ProviderStatus
from actors.ops.quota_findings import quota_checks
from actors.policy.ranking import load_rank_policy
from actors.provider.core import ProviderCore
from actors.router.core import RouterCore
from actors.specs import build_spec
from tests.unit.fakes import Clock, ScriptedAdapter, paused

CAP = "email_verification"
HOUR0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600 + 60   # a minute into an hour


def spec(*providers: dict[str, Any], ranking: str = "actors.policy.ranking:by_cost", cap: str = CAP) -> Any:
    raw = {"state": {"url": "sqlite:///:memory:"}, "policy": {"routing": {"ranking": ranking}},
           "capabilities": {cap: {"providers": list(providers)}}}
    return build_spec(parse_config(raw, env={})).capabilities[0]


def priced(name: str, per_call: str, quota: int | None = None, adapter: str = "simulated") -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "adapter": adapter, "cost": {"per_call": per_call, "currency": "USD"}}
    if quota is not None:
        p["quota"] = {"limit": quota, "per": "hour"}
    return p


class World:
    """Provider cores with scripted adapters and a router core, on one store and one fake clock."""

    def __init__(self, cap_spec: Any, store: SqliteStore, scripts: dict[str, list[Any]] | None = None):
        self.spec, self.store, self.clock = cap_spec, store, Clock(HOUR0)
        self.adapters = {p.name: ScriptedAdapter((scripts or {}).get(p.name, [])) for p in cap_spec.providers
                         if not p.last_resort}
        self.providers = {p.name: self.provider(p.name) for p in cap_spec.providers if not p.last_resort}
        self.router = RouterCore(cap_spec, self.send, clock=RouterClock(time=self.clock, monotonic=self.clock.monotonic,
                                                                         sleep=self.sleep), store=store)

    def provider(self, name: str) -> ProviderCore:
        p = next(p for p in self.spec.providers if p.name == name)
        # The world's clock; the spend loop's pause never ends by itself: these tests flush by hand.
        clock = RouterClock(time=self.clock, monotonic=self.clock.monotonic, sleep=paused)
        return ProviderCore(p, self.adapters[name], clock=clock, store=self.store)

    async def sleep(self, s: float) -> None:
        self.clock.now += s
        await asyncio.sleep(0)

    async def send(self, name: str, method: str, payload: Any, ctx: Any) -> Any:
        return await self.providers[name].call(method, payload, ctx)

    async def verify(self, n: int) -> list[Any]:
        if self.spec.capability == "email_sending":
            email = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}
            return [await self.router.invoke("send_email", email, idempotency_key=f"k{i}") for i in range(n)]
        return [await self.router.invoke("verify_email", {"email": f"a{i}@example.com"}) for i in range(n)]

    async def close(self) -> None:
        for p in self.providers.values():
            await p.spending.close()


def test_by_cost_spends_the_cheap_quota_then_skips_it_until_the_hour_turns(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(str(tmp_path / "s.db"))
        w = World(spec(priced("dear", "0.02"), priced("cheap", "0.008", quota=3)), store,
                  scripts={"cheap": [TransientError("cheap: 503")]})
        first = await w.verify(6)
        # The refusal (a 503) is free: it costs no quota; the request fell back to dear.
        assert [r.provider for r in first] == ["dear", "cheap", "cheap", "cheap", "dear", "dear"]
        assert [a.provider for a in first[0].attempts] == ["cheap", "dear"]
        cheap = w.providers["cheap"].status()
        assert (cheap.spend, cheap.quota_left, cheap.quota_exhausted) == (pytest.approx(0.024), 0, "quota")
        assert cheap.quota_period_end == HOUR0 - 60 + 3600
        assert w.providers["cheap"].health.consecutive_failures == 0  # the last three served: health as it was
        plan = w.router.plan_now()
        [skip] = [s for s in plan.skipped if s.name == "cheap"]
        assert str(skip.reason) == "quota_exhausted" and skip.detail.startswith("quota_exhausted: its quota is spent")
        assert plan.order == ["dear"]

        w.clock.now += 3600  # the hour turns: the router plans with it again by itself
        [again] = await w.verify(1)
        assert again.provider == "cheap"
        assert w.providers["cheap"].status().quota_left == 2
        await w.close()
        await store.close()

    asyncio.run(scenario())


def test_spend_is_flushed_as_increments_and_loaded_by_a_restarted_actor(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(str(tmp_path / "s.db"))
        w = World(spec(priced("cheap", "0.008", quota=10)), store,
                  scripts={"cheap": [{"ok": 1}, asyncio.TimeoutError(), {"ok": 1}]})
        await w.verify(3)
        meter = w.providers["cheap"].spending
        # The timeout may have been charged (its retry round was served): counted against the quota, not spend.
        assert (meter.spend.calls, meter.spend.maybe_calls) == (3, 1)
        await meter.load()
        await meter.flush()
        assert meter.pending == {}
        # A flush the store refuses is kept, and added by the next one.
        meter.charge(True, None)
        real, meter._store = meter._store, lambda: None  # type: ignore[assignment, return-value]
        with pytest.raises(AttributeError):
            await meter.flush()
        meter._store = real
        await meter.flush()
        [row] = await store.spend_get(CAP, HOUR0)
        assert (row.calls, row.maybe_calls, row.amount_nanos, row.lifetime_calls) == (4, 1, 32_000_000, 5)

        restarted = w.provider("cheap")  # Ray restarted the actor: a new process, the same store
        await restarted.spending.load()
        status = restarted.status()
        assert (status.spend, status.quota_left) == (pytest.approx(0.032), 5)
        await w.close()
        await store.close()

    asyncio.run(scenario())


def test_every_quota_spent_goes_to_the_outbox_or_fails_with_a_retry_after(tmp_path: Path) -> None:
    async def scenario(with_outbox: bool) -> Any:
        store = SqliteStore(str(tmp_path / f"s{with_outbox}.db"))
        providers = [priced("a", "0.01", quota=1), priced("b", "0.02", quota=1)]
        if with_outbox:
            providers.append({"name": "outbox", "adapter": "outbox"})
        w = World(spec(*providers, cap="email_sending" if with_outbox else CAP), store)
        if with_outbox:
            from actors.adapters.outbox import OutboxAdapter

            w.adapters["outbox"] = OutboxAdapter(OutboxAdapter.Settings(), capability="email_sending", provider="outbox")
            w.providers["outbox"] = w.provider("outbox")
        results = await w.verify(3)
        await w.close()
        await store.close()
        return results

    results = asyncio.run(scenario(False))
    assert [r.provider for r in results[:2]] == ["a", "b"]
    last = results[2]
    assert last.error.kind is ErrorKind.NO_AVAILABLE_PROVIDER and "quota_exhausted" in last.error.message
    assert last.error.retry_after_s == pytest.approx(3600 - 60)
    queued = asyncio.run(scenario(True))[2]
    assert queued.ok and queued.provider == "outbox" and queued.outbox_id is not None


def test_self_check_warns_at_80_percent_and_names_the_fix() -> None:
    cap = spec(priced("zb", "0.008", quota=100))
    base = dict(name="zb", capability=CAP, adapter="simulated", currency="USD", quota_limit=100,
                quota_period_end=HOUR0 + 3540)
    at = {n: ProviderStatus(**base, spend=n * 0.008, quota_left=100 - n,
                            quota_exhausted="quota" if n >= 100 else None) for n in (79, 80, 100)}
    assert quota_checks(cap.providers, {"zb": at[79]}, HOUR0) == []
    [warn] = quota_checks(cap.providers, {"zb": at[80]}, HOUR0)
    assert warn.severity == "warning" and "80 of 100 calls" in warn.evidence
    assert f"capabilities.{CAP}.providers[0].quota.limit" in warn.fix
    [crit] = quota_checks(cap.providers, {"zb": at[100]}, HOUR0)
    assert crit.severity == "critical" and "spent" in crit.problem


def test_by_cost_loads_by_its_contract_name_and_refuses_mixed_currencies() -> None:
    rank = load_rank_policy("actors.policy.ranking:by_cost")
    assert rank([]) == []
    with pytest.raises(ConfigError, match="several currencies"):
        spec(priced("a", "0.01"), {**priced("b", "0.01"), "cost": {"per_call": "0.01", "currency": "EUR"}})
    # Under another ranking, prices in two currencies are fine (nothing compares them).
    spec(priced("a", "0.01"), {**priced("b", "0.01"), "cost": {"per_call": "0.01", "currency": "EUR"}},
         ranking="actors.policy.ranking:by_health")


def test_a_provider_metered_only_for_its_balance_starts_metering_with_its_first_call_or_passing_probe() -> None:
    """An idle provider opens neither the store nor its HTTP client at start (memory, start-up time)."""
    from actors.adapters.base import Adapter
    from actors.provider.spending import Spending

    class WithBalance(ScriptedAdapter):
        async def balance(self) -> float | None:
            return 500.0

    cap = spec({"name": "zb", "adapter": "simulated"})
    simulated = cap.providers[0]  # as build_spec writes it for an adapter with a balance (zerobounce, neverbounce)
    provider = msgspec.structs.replace(simulated, balance=msgspec.structs.replace(simulated.balance, readable=True))

    async def run() -> list[bool]:
        seen = []
        for begin in ("call", "probe"):
            spending = Spending(provider, WithBalance([]), lambda: None, Clock(HOUR0))  # type: ignore[arg-type]
            assert spending.reads_balance and spending.active and type(spending.adapter).balance is not Adapter.balance
            spending.start(eager=False)  # what ProviderActor.ready does
            seen.append(spending._task is None)
            spending.charge(True, None) if begin == "call" else spending.balance_due_now()
            seen.append(spending._task is not None)
            spending._task.cancel()
        return seen

    assert asyncio.run(run()) == [True, True, True, True]


def test_a_keyed_sends_charge_is_written_with_its_outcome_so_a_lost_process_charged_it(tmp_path: Path) -> None:
    """A process lost before its flush (a lost cluster) leaves no journaled delivery uncharged."""
    async def scenario() -> None:
        store = SqliteStore(str(tmp_path / "s.db"))
        w = World(spec(priced("mail", "0.01", quota=10), cap="email_sending"), store,
                  scripts={"mail": [{"id": "m0"}, {"id": "m1"}, {"id": "m2"}]})
        replies = await w.verify(3)
        assert [r.ok for r in replies] == [True, True, True]
        meter = w.providers["mail"].spending
        assert meter.pending == {} and meter.held == {}  # nothing left for the flush: the process may go now
        [row] = await store.spend_get("email_sending", HOUR0)
        assert (row.calls, row.amount_nanos, row.lifetime_calls) == (3, 30_000_000, 3)
        found = await store.journal_find_many("email_sending", ["k0", "k1", "k2"])
        assert sorted(e[0].state for e in found.values()) == ["delivered"] * 3
        await w.close()
        await store.close()

    asyncio.run(scenario())


def test_a_charge_whose_outcome_write_fails_goes_to_the_flush(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(str(tmp_path / "s.db"))
        w = World(spec(priced("mail", "0.01"), cap="email_sending"), store, scripts={"mail": [{"id": "m0"}]})
        core = w.providers["mail"]
        real = store.journal_put_many

        async def refused(entries: Any, spend: Any = ()) -> None:
            from actors.durable import StoreUnavailable
            raise StoreUnavailable("sqlite:///s.db", "down for the test")

        store.journal_put_many = refused  # type: ignore[method-assign]
        [reply] = await w.verify(1)
        assert reply.ok
        assert core.spending.held == {}  # back to the flush (which may have run already)
        store.journal_put_many = real  # type: ignore[method-assign]
        await core.spending.flush()
        [row] = await store.spend_get("email_sending", HOUR0)
        assert (row.calls, row.amount_nanos) == (1, 10_000_000)  # once: by the flush, not with the outcome too
        await w.close()
        await store.close()

    asyncio.run(scenario())
