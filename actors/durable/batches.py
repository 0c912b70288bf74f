"""How much a clean-up deletes in one transaction.

Expired keys and ended journal entries and outbox items are deleted a
batch at a time, each batch its own transaction: on SQLite one transaction
holds the file's only write lock, and a first expiry of thousands of rows
in one DELETE stalled every claim and journal write behind it for over a
second (the soak's worst spike, issue 20 item 6). Between batches the
writes that queued meanwhile go first. On PostgreSQL a batch holds one
pooled connection and its row locks only briefly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["PRUNE_BATCH", "in_batches"]

# Rows per transaction: a few milliseconds of work on SQLite, small enough
# that a request queued behind a batch does not notice it.
PRUNE_BATCH = 500


async def in_batches(delete: Callable[[int], Awaitable[int]], batch: int | None = None) -> int:
    """Calls `delete(batch)` (which deletes at most `batch` rows in one
    transaction and returns how many it did) until a call deletes fewer;
    returns the total. `batch` is PRUNE_BATCH unless given."""
    batch = PRUNE_BATCH if batch is None else batch
    total = 0
    while True:
        n = await delete(batch)
        total += n
        if n < batch:
            return total
