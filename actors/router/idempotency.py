"""Repeated idempotency keys return the first result and deliver nothing again.

Two layers of claims, taken in this order:

- in memory, synchronously: keys whose first request is still running in
  this router, so a concurrent repeat waits for it rather than sending in
  parallel (no await between the check and the claim);
- in the store (actors.durable): one record per key, claimed by an upsert
  the database decides, so a router on another machine, or this router's
  next incarnation, cannot handle the same key at the same time. Once the
  request ends, the record holds its first result for the window, so
  repeats are answered across restarts and machines.

A key comes with a fingerprint of its request (method and payload): a
repeat whose fingerprint differs is refused with `idempotency_key_reused`,
as Stripe and the IETF Idempotency-Key draft do, instead of being told
"sent" for a message that never was.

What is kept: a delivered result, a queued one (the outbox holds the
request) and one whose outcome is unknown (parked: sending it again could
deliver twice). Not kept: a failure that delivered nothing, which a retry
with the same key must be allowed to deliver; and dry runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from actors.clock import Clock
from actors.durable import KeyClaim, KeyRecord, StateStore, StoreUnavailable
from actors.durable.retry import within
from actors.errors import ErrorKind
from actors.messages import ErrorInfo, InvokeResult
from actors.router.coalesce import PerTurn

log = logging.getLogger("aicmo.router")

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(InvokeResult).decode
_canonical = msgspec.json.Encoder(order="sorted").encode

# A claim outlives its request's deadline by this much: a router that is
# merely slow keeps its key; one that died gives it up soon after.
LEASE_GRACE_S = 10.0
# How often a request whose key another router holds looks again.
POLL_FIRST_S = 0.02
POLL_LONGEST_S = 0.5
# A key held this long by another router: ask whether that router is dead.
ASK_OWNER_AFTER_S = 0.05

# Whether the router named by a claim's owner ("<actor id>:<process>") is
# dead (Ray restarting it, or gone); the router actor asks Ray's GCS.
OwnerGone = Callable[[str], Awaitable[bool]]


def fingerprint(method: str, payload: Any) -> str:
    """What makes two requests the same request: the method and the payload,
    canonical (keys sorted), whatever order the caller wrote them in."""
    return hashlib.sha256(_canonical([method, msgspec.to_builtins(payload)])).hexdigest()[:32]


def worth_keeping(result: InvokeResult) -> bool:
    return not result.dry_run and (result.ok or result.outbox_id is not None)


class Claimed(msgspec.Struct, frozen=True):
    """The key is this request's to handle; `release` it when done.
    `resumed`: the key had an earlier record (a request that crashed, or
    whose result expired), whose sends the journals may still hold."""

    resumed: bool = False


class Replayed(msgspec.Struct, frozen=True):
    result: InvokeResult


class Refused(msgspec.Struct, frozen=True):
    kind: ErrorKind
    message: str


KeyOutcome = Claimed | Replayed | Refused

# What local waiters get when a claim ends without a result to share: they
# look again, and claim the key themselves.
_NOTHING = InvokeResult(ok=False, error=ErrorInfo(kind=ErrorKind.ALL_PROVIDERS_FAILED, message="not kept"))


class IdempotencyRecords:
    def __init__(self, capability: str, window_s: float, clock: Clock, store: Callable[[], StateStore],
                 owner: str | None = None, expire_every: int = 1000, owner_gone: OwnerGone | None = None):
        self.capability = capability
        self.window_s = window_s
        self._clock = clock.time
        self._monotonic = clock.monotonic
        self._store = store
        self._sleep = clock.sleep
        # "<actor>:<process>": a restarted router drops its predecessor's claims.
        self.owner_id = owner or uuid.uuid4().hex
        self.owner = f"{self.owner_id}:{uuid.uuid4().hex[:12]}"
        self._running: dict[str, tuple[asyncio.Future[InvokeResult], str | None]] = {}
        self._owner_gone = owner_gone
        self._predecessors_released: asyncio.Future[None] | None = None
        self._writes = 0
        self._expire_every = expire_every
        self._expiring = False  # one expiry at a time: it runs in batches, off the request's path
        self._claims: PerTurn[tuple[KeyClaim, float], KeyRecord | bool] = PerTurn(self._claim_batch)
        self._finishes: PerTurn[tuple[str, bytes | None, str | None], None] = PerTurn(self._finish_batch)

    def running(self, key: str) -> asyncio.Future[InvokeResult] | None:
        held = self._running.get(key)
        return None if held is None else held[0]

    # --- claiming ------------------------------------------------------------------
    async def acquire(self, key: str, fingerprint: str | None, deadline: float, *, durable: bool = True,
                      redeliver: bool = False) -> KeyOutcome:
        """Claims `key` for one request, or says why not: a first result to
        replay, or a refusal. `durable=False` (a key the router generated)
        claims in memory only: nobody else can know it. `redeliver` is the
        outbox's delivery of a queued request: it takes over the key's
        stored "queued" answer. Raises StoreUnavailable if the store does not
        answer before the monotonic `deadline`."""
        pause = POLL_FIRST_S
        while True:
            held = self._running.get(key)
            if held is not None:
                first_future, first_fp = held
                if not redeliver and _differs(first_fp, fingerprint):
                    return self._reused(key)
                first = await asyncio.shield(first_future)
                if not redeliver and worth_keeping(first):
                    return Replayed(first)
                continue  # the first delivered nothing: this one may try
            future: asyncio.Future[InvokeResult] = asyncio.get_running_loop().create_future()
            self._running[key] = (future, fingerprint)  # claimed here before anything awaits
            if not durable:
                return Claimed()
            try:
                record = await within(deadline, lambda: self._claim(KeyClaim(key, fingerprint, redeliver),
                                                                    deadline), sleep=self._sleep,
                                     clock=self._monotonic)
            except BaseException:
                self._end_local(key, _NOTHING)
                raise
            if isinstance(record, bool):
                return Claimed(resumed=record)
            if record.state == "done":
                assert record.result is not None
                result = _decode(record.result)
                self._end_local(key, result)
                if _differs(record.fingerprint, fingerprint):
                    return self._reused(key)
                return Replayed(result)
            # Another router (or a redelivery) holds it right now: wait for it,
            # unless that router is dead (a replica, killed mid-call: the caller
            # resent to this one). Its claims end and this request goes on at
            # once as a resumed key: what the dead one sent is settled from the
            # providers' journals before anything is sent (attempts.py).
            self._end_local(key, _NOTHING)
            if pause >= ASK_OWNER_AFTER_S and await self._took_over(record.owner):
                pause = POLL_FIRST_S
                continue
            wait = min(pause, record.lease_left_s if record.lease_left_s is not None else pause)
            if self._monotonic() + wait >= deadline:
                return Refused(ErrorKind.DEADLINE_EXCEEDED,
                               f"another request with this idempotency key is still being handled (by {record.owner}); "
                               "it did not end within this request's deadline. Nothing was sent by this one: "
                               "retry with the same key to get its result")
            await self._sleep(max(wait, 0.0))
            pause = min(pause * 2, POLL_LONGEST_S)

    async def release_owners(self, actor_ids: list[str]) -> int:
        """Ends the claims of routers `up` killed (replaced, or replicas removed): their processes are gone."""
        released = 0
        for actor_id in actor_ids:
            released += await self._store().release_claims(actor_id + ":")
        if released:
            log.warning("%s: ended %d claim(s) of router(s) a redeploy removed", self.capability, released)
        return released

    async def _took_over(self, owner: str | None) -> bool:
        """Ends the claims of `owner` if its router is dead; whether it did."""
        if self._owner_gone is None or not owner or owner.startswith(self.owner_id + ":"):
            return False
        try:
            if not await self._owner_gone(owner):
                return False
            released = await self._store().release_claims(owner)
        except Exception as exc:  # noqa: BLE001 - not known: wait for the claim as before
            log.warning("%s: could not tell whether %s is dead (%s)", self.capability, owner, exc)
            return False
        log.warning("%s: ended %d claim(s) of %s, a router that died", self.capability, released, owner)
        return True

    def _reused(self, key: str) -> Refused:
        return Refused(ErrorKind.IDEMPOTENCY_KEY_REUSED,
                       "this idempotency key was used before for a different request (another method or payload); "
                       "nothing was sent. Use a new key for a new request")

    def release_predecessors(self) -> asyncio.Future[None]:
        """Starts (once, and again after a failure) ending the claims a dead
        predecessor left: before this incarnation's first claim, or at once
        when it is a restart (router replicas: a sibling may be waiting for
        those keys, and this one may take no request for a while)."""
        if self._predecessors_released is None or (self._predecessors_released.done()
                                                   and self._predecessors_released.exception() is not None):
            self._predecessors_released = asyncio.ensure_future(self._release_predecessors())
        return self._predecessors_released

    async def _claim(self, claim: KeyClaim, deadline: float) -> KeyRecord | bool:
        """The record that holds the key, or, won, whether it was resumed."""
        self.release_predecessors()
        # Every first request waits for the same task, and goes on in the same
        # turn: their claims still form one batch.
        await asyncio.shield(self._predecessors_released)
        lease_s = max(1.0, deadline - self._monotonic()) + LEASE_GRACE_S
        return await self._claims((claim, lease_s))

    async def _release_predecessors(self) -> None:
        """Once per incarnation, before its first claim: the claims a dead
        predecessor (the same actor, an earlier process) left end now
        rather than when their leases run out."""
        released = await self._store().release_claims(self.owner_id + ":")
        if released:
            log.warning("%s: ended %d claim(s) a previous incarnation left", self.capability, released)

    async def _claim_batch(self, items: list[tuple[KeyClaim, float]]) -> list[KeyRecord | bool]:
        lease_s = max(lease for _, lease in items)
        claims = list({claim.key: claim for claim, _ in items}.values())
        decided = await self._store().claim_keys(self.capability, claims, self.owner, lease_s,
                                                 fresh_after=self._clock() - self.window_s)
        resumed = set(decided.resumed)
        return [decided.lost.get(claim.key, claim.key in resumed) for claim, _ in items]

    # --- ending ----------------------------------------------------------------------
    async def release(self, key: str, result: InvokeResult, fingerprint: str | None, deadline: float,
                      durable: bool = True) -> None:
        """Ends the claim: local waiters get `result`, and the store keeps it
        if it is worth keeping (else the claim is dropped). A key claimed in
        memory only (`durable=False`) is written only to keep its result."""
        self._end_local(key, result)
        if not durable and not worth_keeping(result):
            return
        row = (key, _encode(result) if worth_keeping(result) else None, fingerprint)
        try:
            await within(max(deadline, self._monotonic() + 1.0), lambda: self._finishes(row), sleep=self._sleep,
                         clock=self._monotonic)
        except StoreUnavailable as exc:
            # The answer stands; the claim stays until its lease runs out, and a
            # repeat then settles the key from the providers' journals.
            # Never the key itself: logs are read more widely than the audit log, which hashes it.
            log.warning("%s: the result of an idempotency-keyed request could not be stored: %s", self.capability, exc)
            return
        self._count_write()

    def release_local(self, key: str, result: InvokeResult = _NOTHING) -> None:
        """Ends an in-memory-only claim (a dry run never claims; a key the
        router generated claims durably only by storing its result)."""
        self._end_local(key, result)

    def _end_local(self, key: str, result: InvokeResult) -> None:
        held = self._running.pop(key, None)
        if held is not None and not held[0].done():
            held[0].set_result(result)

    async def _finish_batch(self, rows: list[tuple[str, bytes | None, str | None]]) -> list[None]:
        await self._store().finish_keys(self.capability, self.owner, rows, self._clock())
        return [None] * len(rows)

    def _count_write(self) -> None:
        self._writes += 1
        if self._writes % self._expire_every == 0 and not self._expiring:
            self._expiring = True
            asyncio.ensure_future(self._expire())

    async def _expire(self) -> None:
        try:
            await self._store().expire_keys(self._clock() - self.window_s)
        except StoreUnavailable as exc:  # the next round tries again
            log.warning("%s: expiring old results failed: %s", self.capability, exc)
        finally:
            self._expiring = False

    # --- reading ---------------------------------------------------------------------
    async def stored(self, key: str) -> InvokeResult | None:
        """The key's first result, if one is kept and fresh."""
        record = (await self._store().get_keys(self.capability, [key])).get(key)
        if record is None or record.result is None or record.stored_at < self._clock() - self.window_s:
            return None
        return _decode(record.result)


def _differs(first: str | None, second: str | None) -> bool:
    return first is not None and second is not None and first != second
