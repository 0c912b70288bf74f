"""The provider actor's logic without Ray: failure kinds, timeouts, redaction, limits."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from actors.errors import AuthError, ErrorKind, RateLimited
from actors.messages import CallContext
from actors.payloads import SendEmail
from actors.policy.health import Health
from actors.provider.core import ProviderCore
from tests.unit.fakes import Clock, ScriptedAdapter, provider_spec, sleeper

PAYLOAD = SendEmail(to=["a@b.co"], subject="s", text="t")


def ctx(**kw) -> CallContext:
    return CallContext(request_id="r1", method="send_email", **{"timeout_s": 1.0, **kw})


def call(core: ProviderCore, **kw):
    return asyncio.run(core.call("send_email", PAYLOAD, ctx(**kw)))


@pytest.mark.parametrize(("raised", "kind"), [
    (AuthError("535 bad credentials"), ErrorKind.AUTH),
    (RateLimited("429", retry_after_s=12), ErrorKind.RATE_LIMITED),
    (KeyError("person"), ErrorKind.CRASHED),
    (ConnectionResetError("reset"), ErrorKind.CRASHED),
])
def test_every_failure_is_sorted_into_a_kind(raised: BaseException, kind: ErrorKind) -> None:
    core = ProviderCore(provider_spec(), ScriptedAdapter([raised]), clock=Clock())
    reply = call(core)
    assert not reply.ok and reply.error_kind is kind and reply.error
    assert reply.health == core.health  # health rides along with the reply


def test_rate_limit_carries_the_reset_time_into_health() -> None:
    core = ProviderCore(provider_spec(), ScriptedAdapter([RateLimited("429", retry_after_s=12)]), clock=Clock(500))
    reply = call(core)
    assert reply.retry_after_s == 12 and core.health.throttled_until == 512


def test_timeout_is_enforced_by_the_provider_actor() -> None:
    core = ProviderCore(provider_spec(), ScriptedAdapter([sleeper(5)]), clock=Clock())
    reply = call(core, timeout_s=0.05)
    assert reply.error_kind is ErrorKind.TIMEOUT and reply.latency_ms < 2000


def test_secrets_are_redacted_from_errors() -> None:
    spec = provider_spec()
    spec = type(spec)(**{**{f: getattr(spec, f) for f in spec.__struct_fields__}, "env_secrets": [SecretStr("pa55-w0rd-canary")]})
    core = ProviderCore(spec, ScriptedAdapter([AuthError("login bot:pa55-w0rd-canary refused; Bearer abcdef123")]))
    reply = call(core)
    assert "pa55-w0rd-canary" not in reply.error and "abcdef123" not in reply.error
    assert "pa55-w0rd-canary" not in (core.status().last_error or "")


def test_dry_run_leaves_health_alone() -> None:
    core = ProviderCore(provider_spec(), ScriptedAdapter([AuthError("x")]))
    call(core, dry_run=True)
    assert core.health.state is Health.UNKNOWN and core.health.total_calls == 0


def test_concurrency_limit_queues_excess_attempts() -> None:
    spec = provider_spec()
    spec = type(spec)(**{**{f: getattr(spec, f) for f in spec.__struct_fields__}, "max_concurrency": 2})
    running = {"now": 0, "peak": 0}

    async def tracked():
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        await asyncio.sleep(0.01)
        running["now"] -= 1
        return {"message_id": "m"}

    core = ProviderCore(spec, ScriptedAdapter([tracked] * 6))

    async def run():
        return await asyncio.gather(*(core.call("send_email", PAYLOAD, ctx()) for _ in range(6)))

    assert all(r.ok for r in asyncio.run(run()))
    assert running["peak"] == 2


def test_probe_updates_health_and_reports_changes() -> None:
    changes = []
    core = ProviderCore(provider_spec(), ScriptedAdapter([AuthError("bad key")]), clock=Clock())
    core.on_change = changes.append
    result = asyncio.run(core.probe())
    assert not result.ok and result.error_kind is ErrorKind.AUTH
    assert core.health.state is Health.DEGRADED and changes[0].health is Health.DEGRADED
    assert asyncio.run(core.probe()).ok
