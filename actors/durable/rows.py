"""How records are stored in a row and read back, the same for SQLite and
PostgreSQL: values the database does not read (payloads, results, a
delivered value) as msgpack blobs, and the columns each record is read
from, in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from actors.durable.store import JournalEntry, OutboxItem, SpendRow

__all__ = ["JOURNAL_COLUMNS", "OUTBOX_COLUMNS", "PERIOD_S", "SPEND_COLUMNS", "blob", "decode", "encode",
           "journal_entry", "outbox_item", "spend_row", "unblob"]

encode = msgspec.msgpack.Encoder().encode
decode = msgspec.msgpack.Decoder().decode

OUTBOX_COLUMNS = ("id", "capability", "method", "payload", "idempotency_key", "request_id", "state", "reason",
                  "created_at", "updated_at", "provider", "error", "attempts", "result", "lease_owner")
JOURNAL_COLUMNS = ("capability", "provider", "key", "request_id", "method", "state", "incarnation", "updated_at",
                   "value", "error")

# The longest each period kind lasts: a row is pruned once even the longest ended long enough ago.
PERIOD_S = {"hour": 3600.0, "day": 86400.0, "month": 31 * 86400.0}

# A spend row joined with its provider's meter (m) and the period's spend (s), read by spend_row.
SPEND_COLUMNS = ("m.capability, m.provider, s.period, s.period_start, coalesce(s.calls, 0), "
                 "coalesce(s.maybe_calls, 0), coalesce(s.amount_nanos, 0), s.currency, m.lifetime_calls, "
                 "m.balance_remaining, m.balance_at, m.balance_calls_at")


def blob(value: Any) -> bytes | None:
    return None if value is None else encode(value)


def unblob(value: bytes | None) -> Any:
    # bytes(): PostgreSQL may hand a bytea back as a memoryview.
    return None if value is None else decode(bytes(value))


def journal_entry(row: Sequence[Any]) -> JournalEntry:
    fields = dict(zip(JOURNAL_COLUMNS, row, strict=True))
    fields["value"] = unblob(fields["value"])
    return JournalEntry(**fields)


def outbox_item(row: Sequence[Any]) -> OutboxItem:
    fields = dict(zip(OUTBOX_COLUMNS, row, strict=True))
    fields["payload"] = unblob(fields["payload"])
    fields["result"] = unblob(fields["result"])
    return OutboxItem(**fields)


def spend_row(row: Sequence[Any]) -> SpendRow:
    (capability, provider, period, period_start, calls, maybe_calls, amount_nanos, currency, lifetime_calls,
     balance_remaining, balance_at, balance_calls_at) = row
    return SpendRow(capability=capability, provider=provider, period=period, period_start=period_start,
                    calls=int(calls), maybe_calls=int(maybe_calls), amount_nanos=int(amount_nanos), currency=currency,
                    lifetime_calls=int(lifetime_calls), balance_remaining=balance_remaining, balance_at=balance_at,
                    balance_calls_at=None if balance_calls_at is None else int(balance_calls_at))
