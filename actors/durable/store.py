"""The durable state the delivery guarantees rest on, as an async interface.

Four things are kept, each with one writer:

- **keys** (written by a capability's router): one record per idempotency
  key. While a request with the key is under way the record is its *claim*
  (owner, lease); once it ends, the record holds its first result, so a
  repeat returns it and delivers nothing again, across restarts of the
  router, and across routers on other machines;
- **journal** (written by each provider actor): for every keyed,
  non-idempotent attempt, `started` before the adapter is called and
  `delivered`, `failed` or `unknown` after, so that after a crash anyone can
  tell whether the provider acted on a request;
- **outbox** (written by the outbox adapter and the router that drains it):
  requests queued because no provider could take them, and requests parked
  because their outcome is unknown;
- **secrets** (created once per gateway): keys for keyed hashes (the audit
  log's HMAC), so every actor of a gateway hashes alike.

Claims are decided by the database itself (a unique key and a conditional
upsert, `SELECT ... FOR UPDATE SKIP LOCKED` for the outbox), never by a
read followed by a write, so two routers or two supervisors, on any
machines, cannot both win one key or one outbox item. Leases are measured
on the store's own clock (PostgreSQL's `clock_timestamp()`), not on the
callers' clocks, which differ between machines.

Every method is awaited. The embedded SQLite store runs its statements on a
thread of its own, so a slow commit never blocks an actor's event loop.
All actors of a gateway must reach the same store: `open_store` takes the
gateway's namespace, and several gateways can share one database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

import msgspec

from actors.errors import StoreUnavailable
from actors.events.model import DeliveryEvent, RequestRefs

__all__ = ["OUTBOX_FIELDS", "Claims", "SentMessage", "StoredEvent", "Suppression", "JournalEntry", "KeyClaim", "KeyRecord", "OutboxItem", "SpendDelta", "SpendRow",
           "StateStore", "StoreHealth", "StoreUnavailable"]

JournalState = Literal["started", "delivered", "failed", "unknown"]
OutboxState = Literal["pending", "parked", "delivered", "dropped"]
OutboxReason = Literal["queued", "outcome_unknown"]
KeyState = Literal["running", "done"]

OUTBOX_FIELDS = frozenset({"method", "payload", "state", "reason", "provider", "error", "attempts", "result"})


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True):
    capability: str
    provider: str
    key: str
    request_id: str
    method: str
    state: JournalState
    incarnation: str                 # the provider actor process that wrote it
    updated_at: float
    value: Any = None                # the adapter's value once delivered
    error: str | None = None


class OutboxItem(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    capability: str
    method: str
    payload: dict[str, Any]
    idempotency_key: str
    request_id: str
    state: OutboxState
    reason: OutboxReason
    created_at: float
    updated_at: float
    provider: str | None = None      # for outcome_unknown: where it may have been delivered
    error: str | None = None         # the last thing that went wrong with it
    attempts: int = 0                # delivery attempts made by draining
    result: Any = None               # the delivered value
    lease_owner: str | None = None   # the drain round delivering it right now


class KeyClaim(msgspec.Struct, frozen=True):
    """A router's wish to handle one idempotency key."""

    key: str
    fingerprint: str | None = None
    # Delivering a queued request from the outbox: the key's record holds the
    # "queued" answer, which this claim replaces (and which stays if the
    # delivery fails). A running claim is never taken over this way.
    redeliver: bool = False


class KeyRecord(msgspec.Struct, frozen=True):
    """An idempotency key's record, as a claim that lost finds it."""

    key: str
    state: KeyState
    fingerprint: str | None
    owner: str | None
    result: bytes | None
    stored_at: float
    lease_left_s: float | None       # a running claim's time left, on the store's clock


class Claims(msgspec.Struct, frozen=True):
    """What `claim_keys` decided."""

    lost: dict[str, KeyRecord] = {}  # keys someone else holds, or whose result is still fresh: their records
    resumed: list[str] = []          # keys won from an earlier record: earlier requests may have left
                                     # journal entries to settle (a key new to the store has none)


class StoreHealth(msgspec.Struct, frozen=True, kw_only=True):
    """How the store answered lately, as one actor sees it."""

    url: str                         # without a password
    kind: str                        # sqlite | postgresql
    ok: bool = True
    last_error: str | None = None
    failing_since: float | None = None
    last_ok_at: float | None = None
    round_trips: int = 0             # statements or transactions sent so far
    busy_s: float = 0.0              # time spent waiting for them (a SQLite lock included)
    unjournaled: int = 0             # a provider's outcomes waiting for the store to answer again


class SpendDelta(msgspec.Struct, frozen=True, kw_only=True):
    """Calls a provider actor made since its last flush, for one period
    (actors/policy/cost/quota.py): added to the stored counts, never written over
    them, so a flush retried after a lost answer can only over-count."""

    capability: str
    provider: str
    period: str                      # hour | day | month
    period_start: float              # UTC epoch seconds (cost.period_bounds)
    calls: int = 0                   # charged
    maybe_calls: int = 0             # maybe charged
    amount_nanos: int = 0            # spend x 1e9: exact, and addable in SQL
    currency: str | None = None
    at: float = 0.0


class SpendRow(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's spend in the period holding the time asked about, with
    its lifetime call counter and its last live balance reading."""

    capability: str
    provider: str
    period: str | None               # None: a balance reading, no spend yet
    period_start: float | None
    calls: int = 0
    maybe_calls: int = 0
    amount_nanos: int = 0
    currency: str | None = None
    lifetime_calls: int = 0
    balance_remaining: float | None = None
    balance_at: float | None = None
    balance_calls_at: int | None = None   # lifetime_calls when the balance was read


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery event as the webhook of one provider received it."""

    capability: str
    provider: str
    event: DeliveryEvent
    received_at: float


class Suppression(msgspec.Struct, frozen=True, kw_only=True):
    """An address later sends to are refused (kind `suppressed`)."""

    capability: str
    address: str                     # lower case
    reason: str
    added_at: float
    provider: str | None = None      # whose event put it there
    request_id: str | None = None


class SentMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message a provider accepted, kept while the drop fallback may send it again."""

    capability: str
    request_id: str
    provider: str
    payload: bytes                   # the validated payload, msgpack
    sent_at: float
    key_hash: str | None = None
    message_ref: str | None = None
    rfc_message_id: str | None = None
    resent_at: float | None = None


# Spend rows are kept this long after their period ended (a year of months).
SPEND_RETENTION_S = 400 * 86400
# Markers (the shared-store check's) are read back within seconds; pruning drops them after an hour.
MARKER_TTL_S = 3600


class StateStore(Protocol):
    """What the gateway keeps durably. `SqliteStore` and `PostgresStore`
    implement it and pass the same contract tests (tests/durable/test_store_contract.py)."""

    kind: str
    url: str                         # for people: never holds a password

    # keys: claims and first results (the router)
    async def claim_keys(self, capability: str, claims: Sequence[KeyClaim], owner: str, lease_s: float,
                         fresh_after: float) -> Claims:
        """Claims each key for `owner`, atomically per key. A key is claimed
        when it has no record, when its result is older than `fresh_after`
        (the idempotency window passed), when its running claim's lease ran
        out or is `owner`'s own, or, for `redeliver`, when it holds a result.
        Says which keys were NOT claimed (someone else's running claim, or a
        result still fresh) and which were won from an earlier record."""
        ...

    async def get_keys(self, capability: str, keys: Sequence[str]) -> dict[str, KeyRecord]: ...

    async def finish_keys(self, capability: str, owner: str, rows: Sequence[tuple[str, bytes | None]],
                          now: float) -> None:
        """Ends `owner`'s claims: a result is stored as the key's first
        result (a key never claimed, such as a generated one, gets a record
        too); None drops the claim, putting back the result a `redeliver`
        claim replaced. A claim someone else took over is left alone."""
        ...

    async def release_claims(self, owner_prefix: str) -> int:
        """Ends the leases of the running claims of every owner whose name
        starts with `owner_prefix` (a restarted router ends its
        predecessor's: that process is gone, its requests with it). The
        records stay, so whoever claims such a key next settles what that
        request may have left in the journals."""
        ...

    async def expire_keys(self, before: float) -> int: ...

    # journal: each provider's record of keyed deliveries
    async def journal_claim(self, entries: Sequence[JournalEntry]) -> dict[str, JournalEntry]:
        """Writes each entry (state `started`) where its key has no entry at
        its provider, or one that `failed`: the send is this caller's to make.
        Returns the existing entries of the keys not claimed."""
        ...

    async def journal_find_many(self, capability: str, keys: Sequence[str],
                                provider: str | None = None) -> dict[str, list[JournalEntry]]: ...

    async def journal_put_many(self, entries: Sequence[JournalEntry], spend: Sequence[SpendDelta] = ()) -> None:
        """Writes the entries and adds `spend` (what those sends cost, as
        spend_add does) in one transaction: a process lost after the write
        leaves no delivery without its charge."""
        ...

    # outbox
    async def outbox_add(self, *, capability: str, method: str, payload: dict[str, Any], idempotency_key: str,
                         request_id: str, reason: OutboxReason, now: float, provider: str | None = None,
                         error: str | None = None) -> OutboxItem:
        """Adds an item, or returns the live (pending or parked) item the key
        already has: a request queued twice is the same request."""
        ...

    async def outbox_get(self, item_id: int) -> OutboxItem | None: ...
    async def outbox_find(self, capability: str, key: str) -> OutboxItem | None: ...
    async def outbox_list(self, capability: str | None = None, states: tuple[str, ...] = ("pending", "parked"),
                          limit: int = 1000) -> list[OutboxItem]: ...
    async def outbox_update(self, item_id: int, now: float, **fields: Any) -> OutboxItem | None:
        """Changes `fields` (names in OUTBOX_FIELDS) and releases the item's lease."""
        ...

    async def outbox_lease(self, capability: str, owner: str, lease_s: float, limit: int,
                           ids: Sequence[int] | None = None) -> list[OutboxItem]:
        """Leases pending items nobody holds (or whose lease ran out) to
        `owner`, oldest first: `ids` if given, else up to `limit` of the
        capability's. Items another drain holds are skipped, not waited for."""
        ...

    async def outbox_release(self, ids: Sequence[int], owner: str) -> None: ...
    async def outbox_counts(self) -> dict[tuple[str, str], int]: ...

    # gateway-wide
    async def secret(self, name: str) -> bytes:
        """A random 32-byte key made the first time it is asked for, the same
        for every actor of the gateway afterwards."""
        ...

    async def put_marker(self, token: str, node: str) -> None: ...
    async def find_marker(self, token: str) -> str | None: ...

    async def prune(self, *, journal_before: float, outbox_before: float) -> dict[str, int]:
        """Deletes journal entries that ended (`delivered`, `failed`) and
        outbox items that ended (`delivered`, `dropped`) before the given
        times. Entries still in doubt are kept whatever their age. Spend rows
        of periods that ended more than SPEND_RETENTION_S ago go too."""
        ...

    # spend: each provider actor's own rows (actors/provider/spending.py)
    async def spend_add(self, deltas: Sequence[SpendDelta]) -> None:
        """Adds each delta to its period's row and to its provider's lifetime
        counter, in one transaction (rows made as needed)."""
        ...

    async def spend_get(self, capability: str | None = None, at: float | None = None) -> list[SpendRow]:
        """Per provider (and period kind), the newest period starting at or
        before `at` (now by default), with the lifetime counter and the last
        balance; a provider with a balance reading but no spend has one row
        with `period` None."""
        ...

    async def balance_put(self, capability: str, provider: str, remaining: float, at: float) -> None:
        """Keeps a live balance reading, noting the lifetime counter it was
        read against (the store's own, so the two agree)."""
        ...

    # delivery events (actors/events) and the suppression list
    async def events_put(self, capability: str, provider: str, events: Sequence[DeliveryEvent],
                         received_at: float) -> int:
        """Keeps each event once per (capability, provider, event id): a
        provider's retry or a replay adds nothing. Returns how many were new."""
        ...

    async def events_find(self, refs: RequestRefs, limit: int = 1000) -> list[StoredEvent]:
        """The events carrying any of `refs`, in the order they were received."""
        ...

    async def events_since(self, capability: str, received_after: float, limit: int = 10000) -> list[StoredEvent]:
        """The capability's events received after the time given, oldest first."""
        ...

    async def events_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(capability, provider) -> (events kept, events tied to no request)."""
        ...

    async def suppress_add(self, rows: Sequence[Suppression]) -> int:
        """Adds addresses (an address already there keeps its first record)."""
        ...

    async def suppress_list(self, capability: str | None = None, addresses: Sequence[str] | None = None
                            ) -> list[Suppression]: ...
    async def suppress_remove(self, address: str, capability: str | None = None) -> int: ...

    # messages kept for the drop fallback (actors/router/drop_fallback.py)
    async def sent_put(self, rows: Sequence[SentMessage]) -> None: ...

    async def sent_find(self, capability: str, refs: RequestRefs) -> list[SentMessage]:
        """The kept messages any of `refs` names."""
        ...

    async def sent_mark_resent(self, capability: str, request_id: str, now: float) -> bool:
        """Marks the message re-sent; True for the one caller that did it
        (a conditional update: two routers never both re-send it)."""
        ...

    async def ping(self) -> None: ...
    def health(self) -> StoreHealth: ...
    async def close(self) -> None: ...
