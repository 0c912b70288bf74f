"""The provider actor's logic without Ray: failure kinds, timeouts, redaction,
limits, and what its listeners hear. Its time is a fake clock: nothing here
waits on the real one, except for the event loop's own timer where an
attempt must time out (its adapter never answers)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from actors.errors import AuthError, ErrorKind, RateLimited
from actors.messages import CallContext
from actors.payloads import SendEmail
from actors.policy.health import Health
from actors.provider.core import ProviderCore
from actors.provider.listener import ProviderListener
from tests.unit.fakes import Clock, Heard, ScriptedAdapter, provider_spec, taking, until

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
    clock = Clock(virtual=True)

    async def never_answers() -> None:
        clock.now += 0.04  # what the provider's clock says the attempt took
        await asyncio.Event().wait()

    core = ProviderCore(provider_spec(), ScriptedAdapter([never_answers]), clock=clock)
    reply = call(core, timeout_s=0.05)
    assert reply.error_kind is ErrorKind.TIMEOUT and not reply.ok
    assert reply.latency_ms == pytest.approx(40.0)  # measured on the injected clock, not the machine's
    assert core.health.total_failures == 1 and core.health.last_checked == clock.now


def test_latency_and_health_stamps_come_from_the_injected_clock() -> None:
    clock = Clock(now=5000.0, virtual=True)
    core = ProviderCore(provider_spec(), ScriptedAdapter([taking(clock, 0.25)]), clock=clock)
    reply = call(core)
    assert reply.ok and reply.latency_ms == pytest.approx(250.0)
    assert core.health.last_checked == 5000.25


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
    let_go = asyncio.Event()

    async def tracked():
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        await let_go.wait()  # held until the test has seen who got in
        running["now"] -= 1
        return {"message_id": "m"}

    core = ProviderCore(spec, ScriptedAdapter([tracked] * 6), clock=Clock())

    async def run():
        calls = asyncio.gather(*(core.call("send_email", PAYLOAD, ctx(timeout_s=30.0)) for _ in range(6)))
        await until(lambda: running["now"] == 2)
        held = (running["now"], core.in_flight, len(core.adapter.calls))
        let_go.set()
        return held, await calls

    (inside, in_flight, reached), replies = asyncio.run(run())
    assert (inside, in_flight, reached) == (2, 6, 2)  # six attempts under way, two of them at the adapter
    assert all(r.ok for r in replies) and running["peak"] == 2


def test_probe_updates_health_and_reports_changes() -> None:
    heard = Heard()
    core = ProviderCore(provider_spec(), ScriptedAdapter([AuthError("bad key")]), clock=Clock(), listeners=[heard])
    result = asyncio.run(core.probe())
    assert not result.ok and result.error_kind is ErrorKind.AUTH
    assert core.health.state is Health.DEGRADED and heard.of("on_health_changed")[0].health is Health.DEGRADED
    assert asyncio.run(core.probe()).ok
    assert heard.of("on_reply") == []  # a probe is no call


def test_listeners_hear_each_reply_and_each_change_of_health_in_order() -> None:
    heard = Heard()
    core = ProviderCore(provider_spec(), ScriptedAdapter([AuthError("x"), {"message_id": "m"}]), clock=Clock(),
                        listeners=[heard])
    first, second = call(core), call(core, dry_run=True)
    assert [name for name, _ in heard.events] == ["on_health_changed", "on_reply", "on_reply"]
    assert heard.of("on_reply") == [first, second]
    assert heard.of("on_health_changed")[0].health is Health.DEGRADED


def test_a_listener_that_raises_fails_no_call_and_the_others_still_hear() -> None:
    class Broken(Heard):
        def on_reply(self, reply, dry_run):
            raise RuntimeError("metrics down")

        def on_health_changed(self, status):
            raise RuntimeError("hook down")

    heard = Heard()
    core = ProviderCore(provider_spec(), ScriptedAdapter([AuthError("x")]), clock=Clock(), listeners=[Broken(), heard])
    reply = call(core)
    assert reply.error_kind is ErrorKind.AUTH and core.health.state is Health.DEGRADED
    assert [name for name, _ in heard.events] == ["on_health_changed", "on_reply"]


def test_the_listeners_the_actor_gives_satisfy_the_protocol() -> None:
    from actors.ops.observers import ProviderOps
    from actors.provider.peers import Peers

    core = ProviderCore(provider_spec(), ScriptedAdapter([]), clock=Clock())
    for listener in (ProviderOps(core.spec, core.status), Peers("aicmo", lambda: core.health), Heard()):
        assert isinstance(listener, ProviderListener), type(listener).__name__
