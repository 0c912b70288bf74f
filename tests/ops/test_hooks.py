"""Hooks: called with the right frozen argument, off the request's path; a
hook that raises, hangs or cannot be imported changes no result."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from actors.clock import Clock
from actors.errors import TransientError
from actors.messages import Decision, ProviderStatus
from actors.ops.hooks import HealthChange, HookRunner, load_hook
from actors.ops.metrics import MemoryRecorder
from actors.ops.observers import ProviderOps
from actors.policy.health import Health
from tests.ops import sample_hooks
from tests.ops.helpers import ADDRESS, run, wired

PAYLOAD = {"to": [ADDRESS], "subject": "Hi", "text": "Hello"}
H = "tests.ops.sample_hooks"


@pytest.fixture(autouse=True)
def clean_calls() -> None:
    sample_hooks.CALLS.clear()


def test_success_and_failure_hooks_get_the_decision(tmp_path: Path) -> None:
    h, ops, recorder = wired({"primary": [TransientError("boom")], "backup": [TransientError("boom")]}, tmp_path,
                             hooks={"on_success": [f"{H}:record_success"], "on_failure": [f"{H}.record_failure"]})

    async def scenario() -> list:
        failed = await h.router.invoke("send_email", PAYLOAD, idempotency_key="k-1")
        served = await h.router.invoke("send_email", PAYLOAD, idempotency_key="k-2")
        await ops.hooks.drain()
        ops.metrics.flush()  # counts are buffered until the background task hands them to Ray
        return [failed, served]

    failed, served = run(scenario())
    assert not failed.ok and served.ok
    (kind1, d1), (kind2, d2) = sample_hooks.CALLS
    assert kind1 == "failure" and isinstance(d1, Decision)
    assert d1.request_id == failed.request_id and d1.error_kind == failed.error.kind
    assert [a.provider for a in d1.attempts] == ["primary", "backup"] and d1.idempotency_key == "k-1"
    assert kind2 == "success" and d2.request_id == served.request_id and d2.provider == served.provider
    assert recorder.counter("aicmo_hook_calls", outcome="ok") == 2


def test_a_hook_that_raises_or_hangs_changes_no_result(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    baseline, _, _ = wired({"primary": []}, tmp_path / "a")
    h, ops, recorder = wired({"primary": []}, tmp_path / "b",
                             hooks={"on_success": [f"{H}:explode", f"{H}:too_slow", f"{H}:record_success"]})
    ops.hooks.timeout_s = 0.05

    async def scenario(router) -> list:
        out = [await router.invoke("send_email", PAYLOAD, idempotency_key=f"k-{i}") for i in range(3)]
        return out

    async def with_hooks() -> list:
        out = await scenario(h.router)
        await ops.hooks.drain()
        ops.metrics.flush()
        return out

    caplog.set_level(logging.WARNING, logger="aicmo.hooks")
    expected = run(scenario(baseline.router))
    got = run(with_hooks())
    assert [(r.ok, r.provider, r.value) for r in got] == [(r.ok, r.provider, r.value) for r in expected]
    # Every hook ran for every request, in order, despite the first one raising.
    assert [k for k, _ in sample_hooks.CALLS if k == "success"] == ["success"] * 3
    stats = ops.hooks.stats
    assert stats[f"{H}:explode"].failures == 3 and "the hook's own bug" in stats[f"{H}:explode"].last_error
    assert stats[f"{H}:too_slow"].timeouts == 3
    assert any(f"{H}:explode" in r.getMessage() and "raised RuntimeError" in r.getMessage() for r in caplog.records)
    assert recorder.counter("aicmo_hook_calls", hook=f"{H}:explode", outcome="error") == 3
    assert recorder.counter("aicmo_hook_calls", hook=f"{H}:too_slow", outcome="timeout") == 3


def test_a_hook_that_cannot_load_is_reported_not_raised() -> None:
    runner = HookRunner({"on_success": ["no_such_module_xyz:hook", f"{H}:missing", f"{H}:record_success"]}, owner="router:x")
    assert set(runner.load_errors) == {"no_such_module_xyz:hook", f"{H}:missing"}
    assert "cannot import 'no_such_module_xyz'" in runner.load_errors["no_such_module_xyz:hook"]
    assert runner.wants("on_success") and not runner.wants("on_failure")
    assert load_hook(f"{H}.record_success") is sample_hooks.record_success


def test_submit_never_blocks_a_full_queue_drops_and_counts() -> None:
    runner = HookRunner({"on_success": [f"{H}:record_success"]}, owner="router:x", queue_size=2)

    async def scenario() -> None:
        for i in range(5):  # the worker has not run yet: two fit, three are dropped
            runner.submit("on_success", i)
        await runner.drain()

    run(scenario())
    assert [arg for _, arg in sample_hooks.CALLS] == [0, 1] and runner.dropped == 3
    assert runner.report()["dropped"] == 3


def test_health_change_hook_gets_old_and_new_state() -> None:
    from tests.unit.fakes import provider_spec

    spec = provider_spec()
    import msgspec

    spec = msgspec.structs.replace(spec, hooks=msgspec.structs.replace(spec.hooks, on_health_change=[f"{H}:record_success"]))
    status = ProviderStatus(name="p", capability="email_sending", adapter="simulated")
    ops = ProviderOps(spec, lambda: status, recorder=MemoryRecorder(), clock=Clock(time=lambda: 42.0))

    async def scenario() -> None:
        ops.on_health_changed(msgspec.structs.replace(status, health=Health.DEGRADED))
        ops.on_health_changed(msgspec.structs.replace(status, health=Health.UNHEALTHY))
        await ops.hooks.drain()

    run(scenario())
    changes = [arg for _, arg in sample_hooks.CALLS]
    assert all(isinstance(c, HealthChange) for c in changes)
    assert [(c.old, c.new, c.at, c.provider) for c in changes] == [
        (Health.UNKNOWN, Health.DEGRADED, 42.0, "p"), (Health.DEGRADED, Health.UNHEALTHY, 42.0, "p")]
    assert ops.buffer.recorder.gauges[("aicmo_provider_health", (("capability", "email_sending"), ("provider", "p")))] == 1
