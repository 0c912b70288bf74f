"""The store's spend contract (spend_add, spend_get, balance_put, pruning),
run against the SQLite file and a real PostgreSQL server: increments add
up, also when flushed concurrently from several connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from actors.durable import StateStore
from actors.durable.store import SpendDelta

CAP = "email_verification"
HOUR = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # an hour's start


def delta(provider: str = "zb", start: float = HOUR, **kw: Any) -> SpendDelta:
    return SpendDelta(capability=CAP, provider=provider, period=kw.pop("period", "hour"), period_start=start,
                      currency="USD", at=start + 1, **kw)


def test_spend_increments_add_up_per_period(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        assert await store.spend_get(CAP) == []
        await store.spend_add([delta(calls=3, maybe_calls=1, amount_nanos=24_000_000),
                               delta(calls=2, amount_nanos=16_000_000), delta("nb", calls=1, amount_nanos=5)])
        await store.spend_add([delta(calls=1, amount_nanos=8_000_000)])
        rows = {r.provider: r for r in await store.spend_get(CAP, at=HOUR + 10)}
        zb = rows["zb"]
        assert (zb.period, zb.period_start, zb.calls, zb.maybe_calls, zb.amount_nanos, zb.currency) == (
            "hour", HOUR, 6, 1, 48_000_000, "USD")
        assert zb.lifetime_calls == 7 and rows["nb"].calls == 1 and rows["nb"].lifetime_calls == 1
        # The next hour starts a new row; the lifetime counter goes on.
        await store.spend_add([delta(start=HOUR + 3600, calls=2, amount_nanos=16_000_000)])
        [now] = [r for r in await store.spend_get(CAP, at=HOUR + 3700) if r.provider == "zb"]
        assert (now.period_start, now.calls, now.lifetime_calls) == (HOUR + 3600, 2, 9)
        # Asked about the earlier hour, the earlier row.
        [then] = [r for r in await store.spend_get(CAP, at=HOUR + 100) if r.provider == "zb"]
        assert (then.period_start, then.calls) == (HOUR, 6)
        # Another capability and another namespace see nothing of it.
        assert await store.spend_get("email_sending") == []
        other = make_store("other-ns")
        assert await other.spend_get() == []
        await store.close(), await other.close()

    asyncio.run(scenario())


def test_concurrent_flushes_from_many_connections_add_up(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        stores = [make_store() for _ in range(4)]

        async def flushes(store: StateStore) -> None:
            for _ in range(25):
                await store.spend_add([delta(calls=1, amount_nanos=8_000_000), delta("nb", maybe_calls=1)])

        await asyncio.gather(*(flushes(s) for s in stores))
        rows = {r.provider: r for r in await stores[0].spend_get(CAP, at=HOUR + 10)}
        assert (rows["zb"].calls, rows["zb"].amount_nanos, rows["zb"].lifetime_calls) == (100, 800_000_000, 100)
        assert (rows["nb"].maybe_calls, rows["nb"].lifetime_calls) == (100, 100)
        for s in stores:
            await s.close()

    asyncio.run(scenario())


def test_a_balance_is_kept_with_the_counter_it_was_read_against(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.balance_put(CAP, "zb", 500.0, at=HOUR)  # before any call: a row with no period
        [row] = await store.spend_get(CAP)
        assert (row.period, row.balance_remaining, row.balance_at, row.balance_calls_at) == (None, 500.0, HOUR, 0)
        await store.spend_add([delta(calls=40)])
        await store.balance_put(CAP, "zb", 460.0, at=HOUR + 5)
        await store.spend_add([delta(calls=10)])
        [row] = await store.spend_get(CAP, at=HOUR + 10)
        assert (row.calls, row.lifetime_calls, row.balance_remaining, row.balance_calls_at) == (50, 50, 460.0, 40)
        await store.close()

    asyncio.run(scenario())


def test_pruning_drops_spend_of_periods_ended_over_400_days_ago(make_store: Callable[..., StateStore]) -> None:
    async def scenario() -> None:
        store = make_store()
        store._clock = lambda: HOUR + 500 * 86400  # type: ignore[attr-defined] - both stores prune on their own clock
        await store.spend_add([delta(calls=1), delta(start=HOUR + 450 * 86400, calls=2),
                               delta("nb", period="month", start=HOUR + 80 * 86400, calls=3)])
        pruned = await store.prune(journal_before=0.0, outbox_before=0.0)
        assert pruned["spend"] == 1
        rows = {(r.provider, r.period_start) for r in await store.spend_get(CAP, at=HOUR + 500 * 86400)}
        assert rows == {("zb", HOUR + 450 * 86400), ("nb", HOUR + 80 * 86400)}
        await store.close()

    asyncio.run(scenario())
