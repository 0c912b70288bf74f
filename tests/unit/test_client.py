"""The Python client without Ray: a fake Ray (the client's `ray_api` seam)
whose router drops calls on cue, a fake clock, and sleeps recorded instead
of slept."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import ray

from actors.client import Gateway, ResendPolicy
from actors.client.resend import client_key, resend_budget
from actors.errors import ErrorKind, NotDeployed
from actors.messages import CallReply, ErrorInfo, InvokeResult, Ranking
from tests.unit.fakes import Clock

EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


def died() -> Exception:
    return ray.exceptions.ActorDiedError()


def unavailable() -> Exception:
    return ray.exceptions.ActorUnavailableError("restarting", None)


class FakeRouter:
    """Answers each call with the next item of `script`: an exception is
    raised from ray.get (a dropped call), anything else is the answer.
    Every call's arguments are kept."""

    def __init__(self, script: list[Any], clock: Clock, cost_s: float = 0.0):
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self.clock = clock
        self.cost_s = cost_s

        router = self

        class Method:
            def __init__(self, name: str):
                self.name = name

            def remote(self, *args: Any, **kwargs: Any) -> Any:
                router.calls.append({"method": self.name, "args": args, **kwargs})
                router.clock.now += router.cost_s
                outcome = router.script.pop(0) if router.script else None
                if isinstance(outcome, Exception):
                    return outcome
                if self.name == "ranking":
                    return router.published
                if self.name == "invoke_many":
                    return [InvokeResult(ok=True, method=m, idempotency_key=o.get("idempotency_key"))
                            for m, _, o in args[0]]
                return InvokeResult(ok=True, method=args[0], idempotency_key=kwargs.get("idempotency_key"),
                                    value={"message_id": "m"})

        self.invoke = Method("invoke")
        self.invoke_many = Method("invoke_many")
        self.ranking = Method("ranking")
        self.published = Ranking(capability="email_verification", providers=["zb", "nb"],
                                 actor_names={"zb": "provider:email_verification:zb", "nb": "provider:email_verification:nb"},
                                 attempt_timeout_s={"zb": 5.0, "nb": 5.0})


class FakeRay:
    """Stands in for the `ray` module: get_actor, get, util.list_named_actors."""

    exceptions = ray.exceptions

    def __init__(self, routers: dict[str, FakeRouter], namespace: str = "ns"):
        self.routers = routers
        self.namespace = namespace
        self.lookups = 0            # of names that are registered
        self.misses: list[str] = []  # names looked up in vain (a replica count is found by the first miss)
        fake = self

        class Util:
            @staticmethod
            def list_named_actors(all_namespaces: bool = False) -> list[dict[str, str]]:
                return [{"name": name, "namespace": fake.namespace} for name in fake.routers]

        self.util = Util()

    def get_actor(self, name: str, namespace: str) -> Any:
        if name not in self.routers or namespace != self.namespace:
            self.misses.append(name)
            raise ValueError(f"Failed to look up actor {name}")
        self.lookups += 1
        return self.routers[name]

    def get(self, ref: Any, timeout: float | None = None) -> Any:
        if isinstance(ref, Exception):
            raise ref
        return ref


def gateway(script: list[Any], cost_s: float = 0.0, **options: Any) -> tuple[Gateway, FakeRouter, list[float], Clock]:
    clock = Clock(now=0.0)
    router = FakeRouter(script, clock, cost_s)
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock.now += s

    async def async_sleep(s: float) -> None:
        sleep(s)

    gw = Gateway("ns", ray_api=FakeRay({"router:email_sending": router}), clock=clock, sleep=sleep,
                 async_sleep=async_sleep, **options)
    return gw, router, sleeps, clock


def test_a_dropped_send_is_sent_again_with_the_key_the_client_made() -> None:
    gw, router, sleeps, _ = gateway([died(), unavailable(), "ok"])
    res = gw.invoke("email_sending", "send_email", EMAIL, deadline_s=5)
    assert res.ok and len(router.calls) == 3
    keys = {c["idempotency_key"] for c in router.calls}
    assert len(keys) == 1 and keys.pop().startswith("client-")
    assert sleeps == [0.05, 0.1]
    # On a resend the router is given what is left of the deadline, not the whole of it again.
    assert router.calls[0]["deadline_s"] == 5 and router.calls[2]["deadline_s"] == pytest.approx(5 - 0.15)


def test_the_callers_key_is_kept_and_a_read_gets_no_key() -> None:
    gw, router, _, _ = gateway([died(), "ok", "ok"])
    assert gw.invoke("email_sending", "send_email", EMAIL, idempotency_key="lead-42").ok
    assert [c["idempotency_key"] for c in router.calls] == ["lead-42", "lead-42"]
    assert client_key("email_verification", "verify_email", None, None) is None
    assert client_key("email_sending", "send_email", None, True) is None       # a dry run delivers nothing
    assert client_key("email_sending", "send_mail", None, None) is None        # the router answers unknown_method


def test_without_a_deadline_the_router_gets_the_configs_and_resends_stop_after_the_window() -> None:
    gw, router, sleeps, clock = gateway([died()] * 1000)
    res = gw.invoke("email_sending", "send_email", EMAIL)
    assert router.calls[0]["deadline_s"] is None
    assert res.error.kind is ErrorKind.GATEWAY_UNAVAILABLE and not res.ok
    assert 29.0 <= clock.now <= 30.0 and max(sleeps) == 1.0
    assert res.idempotency_key and res.idempotency_key in res.error.message and "ActorDiedError" in res.error.message
    assert res.error.retry_after_s == 1.0


def test_no_resend_once_the_deadline_has_no_room_left() -> None:
    gw, router, sleeps, _ = gateway([died(), "ok"], cost_s=0.98)
    res = gw.invoke("email_sending", "send_email", EMAIL, deadline_s=1.0)
    assert res.error.kind is ErrorKind.GATEWAY_UNAVAILABLE and len(router.calls) == 1 and sleeps == []


def test_a_router_not_deployed_raises_at_once_and_an_unknown_capability_is_a_result() -> None:
    gw, _, _, _ = gateway([])
    with pytest.raises(NotDeployed, match="router:crm_sync.*namespace 'ns'"):
        gw.invoke("crm_sync", "upsert_contact", {"email": "a@b.example"})
    res = gw.invoke("emails", "send_email", EMAIL)
    assert res.error.kind is ErrorKind.UNKNOWN_METHOD and "email_sending" in res.error.message
    assert gw.capabilities() == ["email_sending"]


def test_a_replaced_router_is_looked_up_again_by_name() -> None:
    gw, router, _, _ = gateway([died(), "ok"])
    fake = gw._ray
    gw.invoke("email_sending", "send_email", EMAIL, deadline_s=5)
    assert fake.lookups == 2


def test_invoke_async_resends_like_invoke() -> None:
    gw, router, sleeps, _ = gateway([unavailable(), "ok"])

    async def main() -> InvokeResult:
        # An awaited ObjectRef: the fake's answers are wrapped in futures.
        real_remote = router.invoke.remote

        def remote(*args: Any, **kwargs: Any) -> Any:
            outcome = real_remote(*args, **kwargs)
            future = asyncio.get_running_loop().create_future()
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
            return future

        router.invoke.remote = remote
        return await gw.invoke_async("email_sending", "send_email", EMAIL, deadline_s=5)

    res = asyncio.run(main())
    assert res.ok and len({c["idempotency_key"] for c in router.calls}) == 1 and sleeps == [0.05]


def test_invoke_many_resends_the_batch_with_the_same_keys() -> None:
    gw, router, _, _ = gateway([died(), "ok"])
    batch = [("send_email", EMAIL, {"idempotency_key": "k1"}), ("send_email", EMAIL, {}), ("send_email", EMAIL)]
    results = gw.invoke_many("email_sending", batch)
    assert [r.ok for r in results] == [True, True, True]
    first, second = (c["args"][0] for c in router.calls)
    assert [o["idempotency_key"] for _, _, o in first] == [o["idempotency_key"] for _, _, o in second]
    assert first[0][2]["idempotency_key"] == "k1" and first[1][2]["idempotency_key"].startswith("client-")
    assert all("deadline_s" in o for _, _, o in second)  # a resend is held to what is left of the window


def test_a_batch_the_router_never_answers_is_unavailable_item_by_item() -> None:
    gw, router, _, _ = gateway([died()] * 100, resend=ResendPolicy(max_delay_s=0.5))
    results = gw.invoke_many("email_sending", [("send_email", EMAIL, {"idempotency_key": "k1", "deadline_s": 2})])
    assert [r.error.kind for r in results] == [ErrorKind.GATEWAY_UNAVAILABLE]
    assert results[0].idempotency_key == "k1" and "'k1'" in results[0].error.message


@pytest.mark.parametrize("resends, remaining, expected", [
    (0, 10.0, 0.05), (1, 10.0, 0.1), (10, 10.0, 1.0),   # growing, capped
    (10, 1.04, None),                                      # no room for an answer after the pause
    (0, 0.04, None),
])
def test_resend_policy(resends: int, remaining: float, expected: float | None) -> None:
    delay = ResendPolicy().delay_s(resends, remaining)
    assert delay == (pytest.approx(expected) if expected is not None else None)


def test_the_resend_budget_is_a_floor_plus_a_share_of_the_calls_sent_in_its_window() -> None:
    budget = resend_budget()                                # 2/s over 10 s, plus 5% of the calls sent
    for i in range(200):
        budget.deposit(i * 0.025)                           # 200 calls within 5 s
    spent = 0
    while budget.balance(5.0) >= 1:
        budget.withdraw(5.0)
        spent += 1
    assert spent == 20 + 10
    assert budget.balance(14.9) < 1                         # the resends are still within the window
    assert budget.balance(15.1) >= 1                        # they have left it: the floor is back


def test_a_resend_over_the_budget_is_still_counted() -> None:
    # A dropped call is always sent again; it uses the budget up all the same.
    budget = resend_budget()
    for _ in range(25):
        budget.withdraw(0.0)
    assert budget.balance(1.0) < 1


def test_raise_for_error_returns_an_ok_result_and_raises_the_kinds_class() -> None:
    from actors.errors import AllProvidersThrottled, GatewayError, RequestFailed

    ok = InvokeResult(ok=True, value={"message_id": "m"})
    assert ok.raise_for_error() is ok
    failed = InvokeResult(ok=False, request_id="r1", capability="email_sending", method="send_email",
                          error=ErrorInfo(kind=ErrorKind.RATE_LIMITED, message="every provider is throttled",
                                          retry_after_s=3.0))
    with pytest.raises(AllProvidersThrottled) as caught:
        failed.raise_for_error()
    exc = caught.value
    assert isinstance(exc, RequestFailed) and isinstance(exc, GatewayError)
    assert exc.kind is ErrorKind.RATE_LIMITED and exc.request_id == "r1" and exc.retry_after_s == 3.0
    assert exc.result is failed and "email_sending.send_email: rate_limited" in str(exc)


class FakeProvider:
    """A provider actor's `call`: answers each call with the next reply of `replies`."""

    def __init__(self, replies: list[CallReply]):
        self.replies = replies
        self.calls: list[tuple[str, Any, Any]] = []
        provider = self

        class Call:
            @staticmethod
            def remote(method: str, payload: Any, ctx: Any) -> Any:
                provider.calls.append((method, payload, ctx))
                return provider.replies.pop(0)

        self.call = Call()


def direct_gateway(replies: list[CallReply]) -> tuple[Gateway, FakeRouter, FakeProvider, Clock]:
    clock = Clock(now=0.0)
    router = FakeRouter([], clock)
    provider = FakeProvider(replies)
    fake = FakeRay({"router:email_verification": router, "router:email_sending": router,
                    "provider:email_verification:zb": provider})
    return Gateway("ns", ray_api=fake, clock=clock, direct_reads=True), router, provider, clock


VERIFY = {"email": "ann@example.com"}


def test_direct_reads_go_to_the_first_ranked_provider_and_ask_for_the_ranking_once_a_second() -> None:
    gw, router, provider, clock = direct_gateway([CallReply(ok=True, value={"status": "valid"}, latency_ms=1.0)] * 3)
    first = gw.invoke("email_verification", "verify_email", VERIFY)
    second = gw.invoke("email_verification", "verify_email", VERIFY)
    assert first.ok and first.provider == "zb" and first.value == {"status": "valid"} and second.ok
    assert [c["method"] for c in router.calls] == ["ranking"]          # the router serves none of them
    assert provider.calls[0][0] == "verify_email" and provider.calls[0][2].timeout_s == 5.0
    clock.now += 1.5                                                   # the ranking is stale: asked again
    assert gw.invoke("email_verification", "verify_email", VERIFY).ok
    assert [c["method"] for c in router.calls] == ["ranking", "ranking"]


def test_a_direct_read_the_provider_did_not_serve_goes_to_the_router_listed_first() -> None:
    gw, router, provider, _ = direct_gateway([CallReply(ok=False, error_kind=ErrorKind.TRANSIENT, error="503")])
    res = gw.invoke("email_verification", "verify_email", VERIFY, deadline_s=5)
    assert res.ok and [c["method"] for c in router.calls] == ["ranking", "invoke"]
    assert res.attempts[0].provider == "zb" and res.attempts[0].error_kind is ErrorKind.TRANSIENT
    assert router.calls[1]["deadline_s"] <= 5
    gw.invoke("email_verification", "verify_email", VERIFY)            # after a failure the ranking is asked again
    assert [c["method"] for c in router.calls][2] == "ranking"


@pytest.mark.parametrize("capability, method, payload", [
    ("email_sending", "send_email", EMAIL),                            # a send: never direct
    ("email_verification", "verify_email", {"email": "nobody"}),       # invalid: the router says why
])
def test_sends_and_invalid_payloads_go_through_the_router(capability: str, method: str, payload: Any) -> None:
    gw, router, provider, _ = direct_gateway([])
    gw.invoke(capability, method, payload)
    assert "invoke" in [c["method"] for c in router.calls] and provider.calls == []


def test_an_empty_ranking_leaves_reads_to_the_router() -> None:
    gw, router, provider, _ = direct_gateway([])
    router.published = Ranking(capability="email_verification")
    assert gw.invoke("email_verification", "verify_email", VERIFY).ok
    assert [c["method"] for c in router.calls] == ["ranking", "invoke"] and provider.calls == []


def test_call_takes_a_typed_payload_whose_class_names_the_method() -> None:
    from actors.payloads import SendEmail

    gw, router, _, _ = gateway(["ok"])
    res = gw.call(SendEmail(to=["ann@example.com"], subject="Hi", text="Hello"), idempotency_key="k1")
    assert res.ok and router.calls[0]["args"][0] == "send_email" and router.calls[0]["idempotency_key"] == "k1"
    assert isinstance(router.calls[0]["args"][1], SendEmail)
    with pytest.raises(TypeError, match="payload Struct"):
        gw.call({"to": ["ann@example.com"]})   # type: ignore[arg-type]


# --- trace context (actors/telemetry) ----------------------------------------------------

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_direct_read_carries_the_callers_trace_context_and_returns_the_providers_ids() -> None:
    traced = CallReply(ok=True, value={"status": "valid"}, trace_id="1" * 32, span_id="2" * 16)
    gw, router, provider, _ = direct_gateway([traced, CallReply(ok=True, value={"status": "valid"})])
    res = gw.invoke("email_verification", "verify_email", VERIFY, traceparent=PARENT)
    ctx = provider.calls[0][2]
    assert ctx.direct and ctx.traceparent == PARENT
    assert (res.trace_id, res.span_id) == ("1" * 32, "2" * 16)  # the provider's span: the HTTP API returns it
    res = gw.invoke("email_verification", "verify_email", VERIFY)  # no caller's span: the provider's is the root
    assert provider.calls[1][2].direct and provider.calls[1][2].traceparent is None and res.trace_id is None


def test_a_direct_read_inside_the_callers_span_is_its_child() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    gw, router, provider, _ = direct_gateway([CallReply(ok=True, value={"status": "valid"})])
    with TracerProvider().get_tracer("caller").start_as_current_span("driver") as span:
        gw.invoke("email_verification", "verify_email", VERIFY)
        ctx = span.get_span_context()
    assert provider.calls[0][2].traceparent == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"


def test_invoke_many_gives_each_request_the_callers_span_unless_it_names_its_own() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    gw, router, _, _ = gateway(["ok", "ok"])
    batch = [("send_email", EMAIL, {"idempotency_key": "k1"}), ("send_email", EMAIL, {"traceparent": PARENT}),
             ("send_email", EMAIL)]
    with TracerProvider().get_tracer("caller").start_as_current_span("driver") as span:
        assert all(r.ok for r in gw.invoke_many("email_sending", batch))
        ctx = span.get_span_context()
    mine = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
    assert [o["traceparent"] for _, _, o in router.calls[0]["args"][0]] == [mine, PARENT, mine]
    # Outside any span, no traceparent at all (a router from before traces takes no such keyword).
    assert all(r.ok for r in gw.invoke_many("email_sending", batch[:1]))
    assert "traceparent" not in router.calls[1]["args"][0][0][2]
