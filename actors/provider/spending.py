"""A provider actor's spend, quota and live balance: the wiring of the pure
code in actors/policy/cost/quota.py into the runtime.

The provider actor is the single writer of its provider's spend (it sees
every attempt: routed, hedged, drained from the outbox, direct reads). It
loads the current period's row from the store at start (`spend_get`), folds
each attempt into it in memory (`cost.account`), and flushes the increments
to the store about every second (`spend_add`): increments, not totals, so a
flush retried after a lost answer can only over-count, the safe side for a
quota. The charge of a journaled (keyed) send is held by its key instead and
written with the send's outcome, in the journal's statement (`take`,
journal.py's OutcomeWriter): a process lost right after a delivery leaves no
delivery uncharged (a lost cluster, docs/head-node.md section 5); if that
write fails the charge goes back to the flush. Every reply says whether the quota is spent (`CallReply.quota_*`),
and the actor pushes a status to the routers when that flips, so a router
skips a spent provider as `quota_exhausted` without counting it against
health (actors/router/quotas.py holds the router's side).

Only a provider with a price, a quota or a live balance to read is metered:
the others cost the store nothing.

Its time is the provider's clock (the period a call falls in, the flush
loop's pause); what it charges and each flip of its quota are told to the
provider's listeners (`on_spend`, `on_quota_flip`: listener.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from actors.adapters.base import Adapter
from actors.clock import SYSTEM_CLOCK, Clock
from actors.durable import StateStore, StoreUnavailable
from actors.durable.store import SpendDelta, SpendRow
from actors.errors import ErrorKind
from actors.messages import ProviderStatus
from actors.policy.cost.quota import (
    Balance,
    CostPolicy,
    Period,
    QuotaExhausted,
    QuotaStatus,
    QuotaWarning,
    Spend,
    account,
    charge_of,
    period_bounds,
    quota_status,
)
from actors.provider.listener import Listeners, ProviderListener
from actors.specs import ProviderSpec

log = logging.getLogger("aicmo.spending")

__all__ = ["NANOS", "Spending"]

NANOS = Decimal(1_000_000_000)


class Spending:
    """One provider's spend in memory, backed by the store."""

    def __init__(self, spec: ProviderSpec, adapter: Adapter, store: Callable[[], StateStore],
                 clock: Clock = SYSTEM_CLOCK, listener: ProviderListener | None = None,
                 status_of: Callable[[], ProviderStatus] | None = None, flush_interval_s: float | None = None):
        """`listener` hears each charge and each flip of the quota, the
        latter with `status_of()` (the provider's status: what a router
        plans with). ProviderCore gives its `Listeners` and its `status`."""
        self.spec = spec
        self.adapter = adapter
        self.price, self.quota = spec.price, spec.quota
        self.reads_balance = spec.reads_balance
        self.active = spec.metered
        self.policy = CostPolicy(near_zero=spec.balance.near_zero)
        self.per = self.quota.per if self.quota is not None else Period.MONTH
        self._store = store
        self._clock = clock
        self.flush_interval_s = flush_interval_s or spec.metrics.flush_interval_s or 1.0
        self.spend = Spend(period_start=period_bounds(self.per, clock.time())[0])
        self.balance: Balance | None = None
        self.pending: dict[float, list[Any]] = {}   # period_start -> [calls, maybe_calls, amount]
        self.held: dict[str, dict[float, list[Any]]] = {}  # key -> its keyed send's charges, written with its outcome
        self.loaded = False
        self.exhausted: str | None = None
        self._listener = listener or Listeners()
        self._status_of = status_of
        self._task: asyncio.Future[None] | None = None
        self._balance_due = 0.0

    # --- accounting (on the request's path: memory only) ----------------------------
    def charge(self, ok: bool, kind: ErrorKind | None, free: bool = False, key: str | None = None) -> None:
        """Folds one attempt in: `free` for a dry run or a call that never
        reached the adapter; `key` for a journaled send, whose charge is
        written with its outcome (`take`)."""
        if not self.active or free:
            return
        self.start()
        charge = charge_of(ok, kind)
        before = self.spend
        self.spend, events = account(before, charge, self._clock.time(), price=self.price, quota=self.quota)
        if self.spend.period_start != before.period_start:
            before = Spend(period_start=self.spend.period_start)
        rows = self.pending if key is None else self.held.setdefault(key, {})
        row = rows.setdefault(self.spend.period_start, [0, 0, Decimal(0)])
        row[0] += self.spend.calls - before.calls
        row[1] += self.spend.maybe_calls - before.maybe_calls
        amount = self.spend.amount - before.amount
        row[2] += amount
        if amount:
            self._listener.on_spend(float(amount))
        for event in events:
            if isinstance(event, (QuotaWarning, QuotaExhausted)):
                log.warning("%s: %s", self.spec.actor_name, event)
        self._check_flip()

    def current(self) -> QuotaStatus:
        return quota_status(self.spend, self._clock.time(), price=self.price, quota=self.quota, balance=self.balance,
                            policy=self.policy)

    def stamp(self) -> dict[str, Any]:
        """The reply's quota fields: "" when not spent (so a router can tell
        a metered provider's "not spent" from an unmetered reply)."""
        if not self.active:
            return {}
        status = self.current()
        exhausted = str(status.exhausted) if status.exhausted is not None else ""
        return {"quota_exhausted": exhausted, "quota_resets_at": status.period_end if exhausted == "quota" else None}

    def into(self, status: ProviderStatus) -> ProviderStatus:
        """The status with this period's spend and quota (what `status --json` shows)."""
        if not self.active:
            return status
        q = self.current()
        return msgspec.structs.replace(
            status, spend=q.spend, currency=q.currency, quota_left=q.quota_left, quota_limit=q.quota_limit,
            quota_period_end=q.period_end if q.quota_limit is not None else None, balance_left=q.balance_left,
            quota_exhausted=str(q.exhausted) if q.exhausted is not None else None)

    def _check_flip(self) -> None:
        status = self.current()
        exhausted = str(status.exhausted) if status.exhausted is not None else None
        if exhausted == self.exhausted:
            return
        self.exhausted = exhausted
        log.warning("%s: quota %s", self.spec.actor_name, f"spent ({exhausted})" if exhausted else "available again")
        if self._status_of is not None:
            try:
                self._listener.on_quota_flip(self._status_of())
            except Exception:  # noqa: BLE001 - a push must never break a request
                log.exception("%s: pushing the quota change failed", self.spec.actor_name)

    # --- the store (off the request's path) ----------------------------------------
    def start(self, *, eager: bool = True) -> None:
        """Starts the load-and-flush loop once, in the running event loop.
        A provider metered only for its live balance waits for its first call
        or passing probe (`eager=False` when the actor starts): an idle one
        opens neither the store nor its provider's HTTP client."""
        if not self.active or (self._task is not None and not self._task.done()):
            return
        if not eager and self.price is None and self.quota is None:
            return
        try:
            self._task = asyncio.ensure_future(self._run())
        except RuntimeError:  # no running loop (a synchronous caller): started by the next attempt
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                if not self.loaded:
                    await self.load()
                await self.flush()
                if self.reads_balance and self._clock.time() >= self._balance_due:
                    await self.read_balance()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store or the provider down: try again next round
                log.warning("%s: spend not flushed or loaded now: %s", self.spec.actor_name, exc)
            await self._clock.sleep(self.flush_interval_s)

    def _mine(self, rows: list[SpendRow]) -> SpendRow | None:
        """This provider's row for its period kind (or its meter row, with no spend yet)."""
        rows = [r for r in rows if r.provider == self.spec.name]
        return next((r for r in rows if r.period == str(self.per)), rows[0] if rows else None)

    async def load(self) -> None:
        """Adds what the store holds for the current period to what this
        process counted before the store answered."""
        row = self._mine(await self._store().spend_get(self.spec.capability, self._clock.time()))
        self.loaded = True
        if row is None:
            return
        s = self.spend
        same = row.period == str(self.per) and row.period_start == s.period_start
        self.spend = msgspec.structs.replace(
            s, calls=s.calls + row.calls * same, maybe_calls=s.maybe_calls + row.maybe_calls * same,
            amount=s.amount + (Decimal(row.amount_nanos) / NANOS if same else Decimal(0)),
            lifetime_calls=s.lifetime_calls + row.lifetime_calls)
        if row.balance_remaining is not None and row.balance_at is not None and self.balance is None:
            # Read against the store's counter; this process's counter starts from it too.
            self.balance = Balance(remaining=row.balance_remaining, at=row.balance_at,
                                   lifetime_calls_at=row.balance_calls_at or 0)
        self._check_flip()

    def _deltas(self, rows: dict[float, list[Any]]) -> list[SpendDelta]:
        now = self._clock.time()
        return [SpendDelta(capability=self.spec.capability, provider=self.spec.name, period=str(self.per),
                           period_start=start, calls=calls, maybe_calls=maybe, amount_nanos=int(amount * NANOS),
                           currency=self.price.currency if self.price is not None else None, at=now)
                for start, (calls, maybe, amount) in sorted(rows.items())]

    def take(self, keys: list[str]) -> list[SpendDelta]:
        """The held charges of these keyed sends, for the statement that
        journals their outcomes; `give_back` if it fails."""
        taken: dict[float, list[Any]] = {}
        for key in keys:
            for start, (calls, maybe, amount) in self.held.pop(key, {}).items():
                row = taken.setdefault(start, [0, 0, Decimal(0)])
                row[0], row[1], row[2] = row[0] + calls, row[1] + maybe, row[2] + amount
        return self._deltas(taken)

    def give_back(self, deltas: list[SpendDelta]) -> None:
        """Charges whose outcome write failed: added to the next flush."""
        for d in deltas:
            row = self.pending.setdefault(d.period_start, [0, 0, Decimal(0)])
            row[0], row[1], row[2] = row[0] + d.calls, row[1] + d.maybe_calls, row[2] + Decimal(d.amount_nanos) / NANOS

    async def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        deltas = self._deltas(pending)
        try:
            await self._store().spend_add(deltas)
        except BaseException:
            self.give_back(deltas)  # added to the next flush
            raise

    def balance_due_now(self) -> None:
        """After a passing probe: the loop reads the balance on its next round."""
        self._balance_due = 0.0
        self.start()

    async def read_balance(self) -> float | None:
        """Reads the provider's live balance (its credits), keeps it in the
        store, and folds it in: near zero, it is treated like a spent quota."""
        self._balance_due = self._clock.time() + self.spec.balance.interval_s
        remaining = await self.adapter.balance()
        if remaining is None:
            return None
        now = self._clock.time()
        self.balance = Balance(remaining=float(remaining), at=now, lifetime_calls_at=self.spend.lifetime_calls)
        try:
            if self.loaded:  # the stored counter the reading is kept against must hold this process's calls
                await self.flush()
            await self._store().balance_put(self.spec.capability, self.spec.name, float(remaining), now)
        except StoreUnavailable as exc:
            log.warning("%s: balance not stored: %s", self.spec.actor_name, exc)
        self._check_flip()
        return float(remaining)

    async def close(self) -> None:
        """Stops the loop and flushes what is left."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.give_back(self.take(list(self.held)))  # sends whose outcome was never written: charged anyway
        await self.flush()
