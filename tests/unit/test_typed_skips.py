"""Skips keep their type on the way out (issue 18, item 3): a request's
`InvokeResult.skips` and its audit record carry each skipped provider's
reason from the closed set of policy/skips.py, beside the words."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from actors.errors import ErrorKind, RateLimited, TransientError
from actors.messages import Decision, InvokeResult, SkipInfo
from actors.ops.audit import audit_record
from actors.policy.skips import SkipReason
from tests.ops.helpers import wired
from tests.unit.harness import Harness


def test_a_throttled_provider_is_a_typed_skip_of_the_result() -> None:
    h = Harness({"a": [RateLimited("429", retry_after_s=30)], "b": [], "c": []})
    assert h.invoke().provider == "b"  # a answered 429: throttled for 30 s
    res = h.invoke()
    assert res.ok and res.provider == "b"
    [skip] = res.skips
    assert skip == SkipInfo(provider="a", reason=SkipReason.THROTTLED, detail=skip.detail)
    assert skip.reason == "throttled" and skip.detail.startswith("throttled for 30.0s more")


def test_a_fallback_the_retry_budget_refuses_is_a_typed_skip_of_the_failure() -> None:
    h = Harness({"a": [TransientError("503")], "b": []}, retry_budget={"percent": 0, "min_per_s": 0}, retry_rounds=0)
    res = h.invoke()
    assert not res.ok and res.error.kind is ErrorKind.RETRY_BUDGET_EXHAUSTED
    assert [(s.provider, s.reason) for s in res.skips] == [("b", SkipReason.RETRY_BUDGET)]


def test_nothing_skipped_nothing_listed() -> None:
    assert Harness({"a": []}).invoke().skips == []


def test_a_replayed_result_keeps_its_skips() -> None:
    import asyncio

    h = Harness({"a": [RateLimited("429", retry_after_s=30)], "b": [], "c": []})
    h.invoke()

    async def twice():
        first = await h.router.invoke("send_email", {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"},
                                      idempotency_key="k-1")
        again = await h.router.invoke("send_email", {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"},
                                      idempotency_key="k-1")
        return first, again

    first, again = asyncio.run(twice())
    assert again.replayed and again.skips == first.skips and first.skips[0].reason is SkipReason.THROTTLED


def test_a_result_written_before_skips_existed_still_reads() -> None:
    old = msgspec.msgpack.encode({"ok": True, "provider": "a", "request_id": "r"})
    assert msgspec.msgpack.decode(old, type=InvokeResult).skips == []
    new = msgspec.json.decode(msgspec.json.encode(InvokeResult(ok=True, skips=[
        SkipInfo(provider="a", reason=SkipReason.QUOTA_EXHAUSTED, detail="quota_exhausted: ...")])), type=InvokeResult)
    assert new.skips[0].reason is SkipReason.QUOTA_EXHAUSTED


def test_the_audit_record_carries_the_typed_reason_beside_the_words(tmp_path: Path) -> None:
    h, ops, _ = wired({"a": [RateLimited("429", retry_after_s=30)], "b": [], "c": []}, tmp_path)
    seen: list[Decision] = []
    h.router.observers.append(seen.append)
    h.invoke()
    res = h.invoke()
    assert seen[-1].skips == res.skips and seen[-1].skipped == {"a": res.skips[0].detail}
    record = audit_record(seen[-1])
    assert record["skips"] == [{"provider": "a", "reason": "throttled", "detail": res.skips[0].detail}]
    assert record["skipped"] == {"a": res.skips[0].detail}   # the words alone, as older readers know them
    assert json.loads(json.dumps(record))["skips"][0]["reason"] == "throttled"
