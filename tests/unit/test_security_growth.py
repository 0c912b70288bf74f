"""Issue 21, items 10 and 11: budgets that grew under healthy traffic, and
audit hashes that fell back to unkeyed SHA-256 while the store was slow."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from actors.policy.budget import RetryBudget
from actors.policy.hedging import hedge_budget
from tests.ops.helpers import wired
from tests.unit.harness import EMAIL


def test_deposits_expire_under_healthy_traffic() -> None:
    """200k requests over 2,000 s with no fallback: only the last ttl's are kept."""
    for budget in (RetryBudget(ttl_s=10.0), hedge_budget(10.0)):
        for i in range(200_000):
            budget.deposit(i / 100)  # 100 requests a second
        assert len(budget._deposits) <= 10 * 100 + 1
        assert budget.balance(2000.0) > 0  # still what it was: the expiry only drops what balance() would


def test_audit_lines_wait_for_the_key_rather_than_being_hashed_without_it(tmp_path: Path) -> None:
    key_of_the_store: list[bytes] = []
    h, ops, _ = wired({"a": [{"message_id": "m1"}, {"message_id": "m2"}]}, tmp_path)
    assert ops.audit is not None

    async def loader() -> None:  # the store does not answer yet, then does
        if key_of_the_store:
            ops.audit.key = key_of_the_store[0]  # type: ignore[union-attr]

    ops.audit_key_loader = loader
    secret_key = "lead-ann@example.com-welcome"
    assert h.invoke(EMAIL, idempotency_key=secret_key).ok
    asyncio.run(ops.flush_audit())
    assert not ops.audit.path.exists() or "sha256:" not in ops.audit.path.read_text()
    assert ops.audit.status()["buffered"] == 1  # held, not dropped
    key_of_the_store.append(b"k" * 32)
    asyncio.run(ops.flush_audit())
    lines = [json.loads(line) for line in ops.audit.path.read_text().splitlines()]
    assert [line["key"][:5] for line in lines] == ["hmac:"] and ops.audit.status()["buffered"] == 0
