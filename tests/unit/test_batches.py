"""actors/durable/batches.py: a clean-up goes a batch at a time until a batch comes back short."""

from __future__ import annotations

import asyncio

from actors.durable.batches import in_batches


def test_batches_go_on_until_one_comes_back_short() -> None:
    left = [7]
    asked: list[int] = []

    async def delete(batch: int) -> int:
        asked.append(batch)
        gone = min(batch, left[0])
        left[0] -= gone
        return gone

    assert asyncio.run(in_batches(delete, 3)) == 7
    assert asked == [3, 3, 3] and left == [0]


def test_an_exact_multiple_asks_once_more_and_stops_on_nothing() -> None:
    left = [6]

    async def delete(batch: int) -> int:
        gone = min(batch, left[0])
        left[0] -= gone
        return gone

    assert asyncio.run(in_batches(delete, 3)) == 6
