"""The durable state the delivery guarantees rest on, as an interface.

Three things are kept, each with one writer:

- **results** (written by a capability's router): the first result of each
  idempotency key, so a repeat returns it and delivers nothing again, across
  restarts of the router;
- **journal** (written by each provider actor): for every keyed,
  non-idempotent attempt, `started` before the adapter is called and
  `delivered`, `failed` or `unknown` after, so that after a crash anyone can
  tell whether the provider acted on a request;
- **outbox** (written by the outbox adapter and the router that drains it):
  requests queued because no provider could take them, and requests parked
  because their outcome is unknown.

All actors of a gateway must reach the same store. The embedded SQLite file
does that when they share a filesystem (one machine, or several Ray nodes on
one machine); across machines, implement this interface on a shared
database (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

import msgspec

JournalState = Literal["started", "delivered", "failed", "unknown"]
OutboxState = Literal["pending", "parked", "delivered", "dropped"]
OutboxReason = Literal["queued", "outcome_unknown"]


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


class StateStore(Protocol):
    # results: the router's first result per idempotency key
    def get_result(self, capability: str, key: str, not_before: float) -> bytes | None: ...
    def put_result(self, capability: str, key: str, result: bytes, now: float) -> None: ...
    def put_results_many(self, capability: str, rows: list[tuple[str, bytes, float]]) -> None: ...
    def expire_results(self, before: float) -> int: ...

    # journal: each provider's record of keyed deliveries
    def journal_get(self, capability: str, provider: str, key: str) -> JournalEntry | None: ...
    def journal_find(self, capability: str, key: str) -> list[JournalEntry]: ...
    def journal_find_many(self, capability: str, keys: Sequence[str],
                          provider: str | None = None) -> dict[str, list[JournalEntry]]: ...
    def journal_put(self, entry: JournalEntry) -> None: ...
    def journal_put_many(self, entries: list[JournalEntry]) -> None: ...

    # outbox
    def outbox_add(self, *, capability: str, method: str, payload: dict[str, Any], idempotency_key: str,
                   request_id: str, reason: OutboxReason, now: float, provider: str | None = None,
                   error: str | None = None) -> OutboxItem: ...
    def outbox_get(self, item_id: int) -> OutboxItem | None: ...
    def outbox_find(self, capability: str, key: str) -> OutboxItem | None: ...
    def outbox_list(self, capability: str | None = None, states: tuple[str, ...] = ("pending", "parked"),
                    limit: int = 1000) -> list[OutboxItem]: ...
    def outbox_update(self, item_id: int, now: float, **fields: Any) -> OutboxItem | None: ...
    def outbox_counts(self) -> dict[tuple[str, str], int]: ...

    def close(self) -> None: ...


def open_store(url: str) -> StateStore:
    """`sqlite:///abs/path.db`, or a plain directory path (the file `state.db` in it)."""
    from actors.durable.sqlite import SqliteStore

    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite://"):])
    if "://" in url:
        raise ValueError(f"unsupported state store {url!r}: only sqlite:///path is built in")
    from pathlib import Path

    return SqliteStore(str(Path(url).expanduser() / "state.db"))
