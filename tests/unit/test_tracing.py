"""Traces from the router core without Ray (issue 23): the spans of a request
with a fallback, a hedge, a retry round, a replay and a skip, exactly, taken
by the SDK's in-memory exporter; the providers are in-process cores, so
their spans (children of the attempts) are in the same exporter. Also the
traceparent helpers and where the config's endpoint comes from."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from actors.config import parse_config
from actors.errors import ErrorKind, RateLimited, TransientError
from actors.messages import Decision
from actors.ops.audit import audit_record
from actors.specs import traces_spec
from actors.telemetry import Tracing, parse_traceparent
from actors.telemetry.context import current_traceparent, format_traceparent
from actors.telemetry.spans import key_hash
from tests.unit.fakes import sleeper
from tests.unit.harness import EMAIL, Harness

VERIFY = {"email": "ann@example.com"}
ROOT = "email_sending.send_email"


@pytest.fixture
def traced() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider.get_tracer("test")), exporter


def by_name(spans: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def hexid(n: int, width: int) -> str:
    return f"{n:0{width}x}"


def test_a_fallback_is_one_trace_with_a_span_per_attempt_and_the_providers_under_them(traced) -> None:
    tracing, exporter = traced
    h = Harness({"a": [TransientError("503 busy")], "b": []}, tracing=tracing, retry_rounds=0)
    decisions: list[Decision] = []
    h.router.observers.append(decisions.append)
    res = h.invoke(idempotency_key="lead-42")
    assert res.ok and res.provider == "b"

    spans = exporter.get_finished_spans()
    names = by_name(spans)
    assert sorted(names) == sorted([ROOT, "store claim", "store record", "attempt a", "attempt b",
                                    "provider a", "provider b"])
    assert all(len(v) == 1 for v in names.values())
    [root] = names[ROOT]
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    assert res.trace_id == hexid(root.context.trace_id, 32) and res.span_id == hexid(root.context.span_id, 16)
    assert decisions[0].trace_id == res.trace_id  # what the audit line carries
    assert audit_record(decisions[0])["trace_id"] == res.trace_id
    assert root.parent is None and root.kind is SpanKind.SERVER
    assert dict(root.attributes) == {
        "aicmo.capability": "email_sending", "aicmo.method": "send_email", "aicmo.request_id": res.request_id,
        "aicmo.dry_run": False, "aicmo.idempotency_key.sha256": key_hash("lead-42"), "aicmo.deadline_s": 30.0,
        "aicmo.outcome": "ok", "aicmo.replayed": False, "aicmo.attempts": 2, "aicmo.provider": "b"}
    assert root.status.status_code is StatusCode.UNSET

    [a], [b] = names["attempt a"], names["attempt b"]
    for span in (a, b, *names["store claim"], *names["store record"]):
        assert span.parent.span_id == root.context.span_id
    assert a.kind is SpanKind.CLIENT and b.kind is SpanKind.CLIENT
    assert dict(a.attributes) == {
        "aicmo.provider": "a", "aicmo.round": 0, "aicmo.attempt": 1, "http.request.resend_count": 0,
        "aicmo.hedged": False, "aicmo.ok": False, "aicmo.cancelled": False, "aicmo.maybe_delivered": False,
        "error.type": "transient"}
    assert a.status.status_code is StatusCode.ERROR
    assert dict(b.attributes) == {
        "aicmo.provider": "b", "aicmo.round": 0, "aicmo.attempt": 2, "http.request.resend_count": 1,
        "aicmo.hedged": False, "aicmo.ok": True, "aicmo.cancelled": False, "aicmo.maybe_delivered": False}
    # The provider continues the attempt's context (carried in CallContext.traceparent).
    [pa], [pb] = names["provider a"], names["provider b"]
    assert pa.parent.span_id == a.context.span_id and pb.parent.span_id == b.context.span_id
    assert pa.kind is SpanKind.SERVER and pa.attributes["error.type"] == "transient"
    assert h.adapters["b"].calls[0][2].traceparent == format_traceparent(
        hexid(b.context.trace_id, 32), hexid(b.context.span_id, 16))
    assert [s.name for s in spans].index("store record") > [s.name for s in spans].index("attempt b")


def test_a_hedge_and_its_cancelled_partner_are_both_attempt_spans(traced) -> None:
    tracing, exporter = traced
    fast = [{"email": "ann@example.com", "status": "valid"}] * 30
    h = Harness({"a": list(fast), "b": [{"email": "ann@example.com", "status": "valid", "by": "b"}]},
                capability="email_verification", tracing=tracing,
                hedging={"enabled": True, "min_samples": 20, "min_delay_ms": 1, "budget_percent": 100})
    h.restart_router(real_sleep=True)
    for _ in range(25):
        assert h.invoke(VERIFY, method="verify_email").provider == "a"
    exporter.clear()
    h.adapters["a"].script = [sleeper(2)]
    res = h.invoke(VERIFY, method="verify_email")
    assert res.ok and res.provider == "b"

    names = by_name(exporter.get_finished_spans())
    [a], [b] = names["attempt a"], names["attempt b"]
    assert (a.attributes["aicmo.hedged"], a.attributes["aicmo.cancelled"], a.attributes["error.type"]) == (
        False, True, "cancelled")
    assert (b.attributes["aicmo.hedged"], b.attributes["aicmo.cancelled"], b.attributes["aicmo.attempt"]) == (
        True, False, 2)
    assert "error.type" not in b.attributes
    [pa] = names["provider a"]
    assert pa.attributes["aicmo.cancelled"] is True and pa.parent.span_id == a.context.span_id
    [root] = names["email_verification.verify_email"]
    assert root.attributes["aicmo.outcome"] == "ok" and "aicmo.idempotency_key.sha256" not in root.attributes
    assert "store claim" not in names  # an idempotent read claims no key


def test_a_retry_round_numbers_its_attempts(traced) -> None:
    tracing, exporter = traced
    h = Harness({"a": [TransientError("503")] * 2, "b": [TransientError("503")] * 2}, tracing=tracing)
    res = h.invoke(idempotency_key="round-1")
    assert res.ok and len(res.attempts) == 5
    attempts = sorted((s for s in exporter.get_finished_spans() if s.name.startswith("attempt ")),
                      key=lambda s: s.attributes["aicmo.attempt"])
    # The ranking picks each round's order; the spans follow the result's attempts, numbered by round.
    assert [(s.attributes["aicmo.provider"], s.attributes["aicmo.round"], s.attributes["aicmo.attempt"],
             s.attributes.get("error.type")) for s in attempts] == [
        (a.provider, round_, n, None if a.ok else "transient")
        for n, (a, round_) in enumerate(zip(res.attempts, [0, 0, 1, 1, 2]), start=1)]


def test_a_replay_is_a_trace_of_its_own_linked_to_the_request_that_made_the_result(traced) -> None:
    tracing, exporter = traced
    h = Harness({"a": []}, tracing=tracing)

    async def twice() -> tuple[Any, Any]:
        first = await h.router.invoke("send_email", EMAIL, idempotency_key="k-1")
        again = await h.router.invoke("send_email", EMAIL, idempotency_key="k-1")
        return first, again

    first, again = asyncio.run(twice())
    assert again.replayed and again.trace_id != first.trace_id
    roots = [s for s in exporter.get_finished_spans() if s.name == ROOT]
    assert [r.attributes["aicmo.replayed"] for r in roots] == [False, True]
    replay = roots[1]
    assert again.trace_id == hexid(replay.context.trace_id, 32)
    [link] = replay.links
    assert (hexid(link.context.trace_id, 32), hexid(link.context.span_id, 16)) == (first.trace_id, first.span_id)
    in_replay = [s.name for s in exporter.get_finished_spans() if s.context.trace_id == replay.context.trace_id]
    assert sorted(in_replay) == [ROOT, "store claim"]  # nothing was sent again


def test_a_skipped_provider_is_an_event_with_its_typed_reason(traced) -> None:
    tracing, exporter = traced
    h = Harness({"a": [RateLimited("429", retry_after_s=30)], "b": [], "c": []}, tracing=tracing)
    assert h.invoke().provider == "b"
    [a] = [s for s in exporter.get_finished_spans() if s.name == "attempt a"]
    assert a.attributes["aicmo.retry_after_s"] == 30.0 and a.attributes["error.type"] == "rate_limited"
    exporter.clear()
    assert h.invoke().provider == "b"
    [root] = [s for s in exporter.get_finished_spans() if s.name == ROOT]
    [event] = root.events
    assert event.name == "provider.skipped"
    assert (event.attributes["aicmo.provider"], event.attributes["aicmo.skip.reason"]) == ("a", "throttled")
    assert not any(s.name == "attempt a" for s in exporter.get_finished_spans())


def test_a_callers_traceparent_is_the_parent_and_a_failure_marks_the_root(traced) -> None:
    tracing, exporter = traced
    h = Harness({"a": [TransientError("503")]}, tracing=tracing, retry_rounds=0)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    res = h.invoke(traceparent=parent)
    assert not res.ok and res.trace_id == "0af7651916cd43dd8448eb211c80319c"
    [root] = [s for s in exporter.get_finished_spans() if s.name == ROOT]
    assert hexid(root.parent.span_id, 16) == "b7ad6b7169203331" and root.parent.is_remote
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["aicmo.outcome"] == str(res.error.kind)


def test_a_caller_that_samples_out_gets_no_trace_id(traced) -> None:
    tracing, exporter = traced
    h = Harness({"a": []}, tracing=tracing)
    res = h.invoke(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
    assert res.ok and res.trace_id is None and exporter.get_finished_spans() == ()
    # The context still travels, unsampled: the provider's spans follow the caller's choice.
    assert parse_traceparent(h.adapters["a"].calls[0][2].traceparent).sampled is False


def test_off_no_trace_id_and_no_context_sent() -> None:
    h = Harness({"a": []})
    res = h.invoke(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert res.ok and res.trace_id is None and res.span_id is None
    assert h.adapters["a"].calls[0][2].traceparent is None
    assert audit_record(Decision(at=0, capability="email_sending", method="send_email", request_id="r",
                                 ok=True))["trace_id"] is None


def test_unknown_methods_are_not_named_in_spans(traced) -> None:
    tracing, exporter = traced
    res = Harness({"a": []}, tracing=tracing).invoke(method="Bobby Tables")
    assert res.error.kind is ErrorKind.UNKNOWN_METHOD
    assert [s.name for s in exporter.get_finished_spans()] == ["email_sending.unknown"]


# --- the traceparent ------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, "", "garbage", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
                                   "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                   "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                                   "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                                   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"])
def test_a_traceparent_to_ignore_starts_a_trace_of_its_own(value: Any) -> None:
    assert parse_traceparent(value) is None


def test_a_traceparent_read_and_written() -> None:
    p = parse_traceparent("00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01")
    assert p == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", True)
    assert format_traceparent(p.trace_id, p.span_id) == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    # A later version's extra fields are allowed.
    assert parse_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-more").sampled is False


def test_the_callers_current_span_is_the_parent() -> None:
    from opentelemetry import trace

    assert current_traceparent() is None  # no current span
    tracer = TracerProvider().get_tracer("caller")
    with tracer.start_as_current_span("driver") as span:
        ctx = span.get_span_context()
        assert current_traceparent() == format_traceparent(hexid(ctx.trace_id, 32), hexid(ctx.span_id, 16))
    assert not trace.get_current_span().get_span_context().is_valid


# --- the config ---------------------------------------------------------------------------

def config(**traces: Any) -> Any:
    return parse_config({"telemetry": {"traces": traces},
                         "capabilities": {"email_sending": {"providers": [{"name": "a", "adapter": "noop"}]}}}, env={})


def test_traces_are_off_unless_an_endpoint_is_named() -> None:
    assert traces_spec(config(), env={}) is None
    spec = traces_spec(config(endpoint="http://tempo:4318/v1/traces", sampling_ratio=0.25,
                              headers={"Authorization": "Bearer t"}), env={})
    assert (spec.endpoint, spec.sampling_ratio, spec.headers["Authorization"].get_secret_value()) == (
        "http://tempo:4318/v1/traces", 0.25, "Bearer t")


def test_the_standard_otel_variables_apply_when_the_config_names_no_endpoint() -> None:
    spec = traces_spec(config(), env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
                                      "OTEL_EXPORTER_OTLP_HEADERS": "x-token=abc%20d, tenant=t1"})
    assert spec.endpoint == "http://collector:4318/v1/traces"
    assert {k: v.get_secret_value() for k, v in spec.headers.items()} == {"x-token": "abc d", "tenant": "t1"}
    spec = traces_spec(config(), env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                                      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/v1/traces"})
    assert spec.endpoint == "http://traces:4318/v1/traces"
    assert traces_spec(config(endpoint="http://mine:4318/v1/traces"),
                       env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"}).endpoint == "http://mine:4318/v1/traces"


def test_a_bad_endpoint_or_ratio_is_refused_by_name() -> None:
    from actors.errors import ConfigError

    with pytest.raises(ConfigError, match="telemetry.traces.endpoint"):
        config(endpoint="tempo:4317")
    with pytest.raises(ConfigError, match="telemetry.traces.sampling_ratio"):
        config(endpoint="http://tempo:4318/v1/traces", sampling_ratio=2)


def test_invoke_json_shows_the_trace_id() -> None:
    import json

    from actors.cli.render import as_json
    from actors.messages import InvokeResult

    assert json.loads(as_json(InvokeResult(ok=True, trace_id="1" * 32)))["trace_id"] == "1" * 32
    assert json.loads(as_json(InvokeResult(ok=True)))["trace_id"] is None


def test_an_outbox_delivery_is_a_trace_linked_to_the_request_that_queued_it(traced) -> None:
    tracing, exporter = traced
    h = Harness({"a": [TransientError("down")] * 2 + [{"message_id": f"m{i}"} for i in range(3)], "outbox": []},
                tracing=tracing)
    queued = [h.invoke({**EMAIL, "subject": f"s{i}"}, idempotency_key=f"q{i}") for i in range(2)]
    assert all(q.ok and q.provider == "outbox" and q.trace_id is not None for q in queued)
    exporter.clear()
    assert asyncio.run(h.router.drain_outbox())["delivered"] == [q.outbox_id for q in queued]
    roots = [s for s in exporter.get_finished_spans() if s.name == ROOT]
    assert [r.attributes["aicmo.outbox_id"] for r in roots] == [q.outbox_id for q in queued]
    for root, q in zip(roots, queued):
        assert root.attributes["aicmo.provider"] == "a" and root.attributes["aicmo.outcome"] == "ok"
        [link] = root.links
        assert (hexid(link.context.trace_id, 32), hexid(link.context.span_id, 16)) == (q.trace_id, q.span_id)
        assert {s.name for s in exporter.get_finished_spans() if s.context.trace_id == root.context.trace_id} >= {
            "store queued result", "attempt a", "provider a"}


def test_off_the_sdk_is_never_imported() -> None:
    """Tracing off costs no SDK: the router, provider, client and HTTP modules,
    and a request through them, import nothing of opentelemetry.sdk."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import actors.router.actor, actors.provider.actor, actors.client, actors.http.app\n"
        "from tests.unit.harness import Harness\n"
        "assert Harness({'a': []}).invoke(idempotency_key='k').ok\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk'))\n"
        "assert not loaded, loaded\n")
    from pathlib import Path

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_store_round_trip_that_fails_is_an_error_span_and_the_request_says_so(traced) -> None:
    from actors.errors import StoreUnavailable

    tracing, exporter = traced
    h = Harness({"a": []}, tracing=tracing)

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("sqlite:///state.db", "database is locked")

    h.router.results.acquire = down
    res = h.invoke(idempotency_key="k-down")
    assert not res.ok and res.error.kind is ErrorKind.STORE_UNAVAILABLE and h.calls("a") == 0
    names = by_name(exporter.get_finished_spans())
    [claim], [root] = names["store claim"], names[ROOT]
    assert claim.status.status_code is StatusCode.ERROR and claim.attributes["error.type"] == "StoreUnavailable"
    assert root.attributes["aicmo.outcome"] == "store_unavailable" and "attempt a" not in names


# --- direct reads: the client straight to the provider (actors/client/direct.py) -----------

def direct_call(h: Harness, traceparent: str | None = None) -> Any:
    from actors.messages import CallContext
    from actors.payloads import METHODS, validate_payload

    payload = validate_payload(METHODS["email_verification"]["verify_email"], VERIFY)
    ctx = CallContext(request_id="r-direct", method="verify_email", traceparent=traceparent, direct=True)
    return asyncio.run(h.providers["a"].call("verify_email", payload, ctx))


def test_a_direct_read_is_a_trace_of_its_own_in_the_provider_its_ids_in_the_reply(traced) -> None:
    tracing, exporter = traced
    h = Harness({"a": [{"email": "ann@example.com", "status": "valid"}]}, capability="email_verification",
                tracing=tracing)
    reply = direct_call(h)
    assert reply.ok
    [span] = exporter.get_finished_spans()
    assert span.name == "provider a" and span.parent is None and span.kind is SpanKind.SERVER
    assert dict(span.attributes) == {
        "aicmo.provider": "a", "aicmo.capability": "email_verification", "aicmo.method": "verify_email",
        "aicmo.request_id": "r-direct", "aicmo.direct": True, "aicmo.ok": True}
    assert (reply.trace_id, reply.span_id) == (hexid(span.context.trace_id, 32), hexid(span.context.span_id, 16))


def test_a_direct_read_continues_the_callers_span_and_follows_its_sampling(traced) -> None:
    tracing, exporter = traced
    h = Harness({"a": [{"email": "ann@example.com", "status": "valid"}] * 2}, capability="email_verification",
                tracing=tracing)
    reply = direct_call(h, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    [span] = exporter.get_finished_spans()
    assert hexid(span.parent.span_id, 16) == "b7ad6b7169203331" and span.parent.is_remote
    assert reply.trace_id == "0af7651916cd43dd8448eb211c80319c" == hexid(span.context.trace_id, 32)
    exporter.clear()
    reply = direct_call(h, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")  # the caller samples out
    assert reply.ok and reply.trace_id is None and exporter.get_finished_spans() == ()


def test_off_a_direct_read_has_no_trace() -> None:
    h = Harness({"a": [{"email": "ann@example.com", "status": "valid"}]}, capability="email_verification")
    reply = direct_call(h, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert reply.ok and reply.trace_id is None and reply.span_id is None


def test_a_batchs_requests_each_continue_the_traceparent_of_their_options(traced) -> None:
    tracing, exporter = traced
    h = Harness({"a": []}, tracing=tracing)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    results = asyncio.run(h.router.invoke_many([("send_email", EMAIL, {"idempotency_key": f"b{i}", "traceparent": parent})
                                                for i in range(2)]))
    assert [r.trace_id for r in results] == ["0af7651916cd43dd8448eb211c80319c"] * 2
    roots = [s for s in exporter.get_finished_spans() if s.name == ROOT]
    assert len(roots) == 2 and {hexid(r.parent.span_id, 16) for r in roots} == {"b7ad6b7169203331"}


# --- export: our encoder, the SDK's transport ------------------------------------------------

def varied_spans(tracing: Tracing, exporter: InMemorySpanExporter) -> Any:
    """Spans with every part the encoder writes: a remote parent, a fallback's error status,
    a skip's event, a replay's link, int, float, bool and string attributes."""
    h = Harness({"a": [RateLimited("429", retry_after_s=30)], "b": [], "c": []}, tracing=tracing)
    h.invoke(idempotency_key="w-1", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    h.invoke(idempotency_key="w-1")  # replayed: a link
    h.invoke(idempotency_key="w-2")  # a skipped (throttled): an event
    spans = exporter.get_finished_spans()
    assert any(s.events for s in spans) and any(s.links for s in spans) and any(s.parent and s.parent.is_remote
                                                                                 for s in spans)
    assert any(s.status.status_code is StatusCode.ERROR for s in spans)
    return spans


def test_our_encoding_is_the_official_encoders_message(traced) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from actors.telemetry.wire import encode_request

    spans = varied_spans(*traced)
    ours, official = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    ours.ParseFromString(encode_request(spans))
    official.ParseFromString(encode_spans(spans).SerializeToString())
    assert ours == official
    assert encode_request(spans) == encode_request(spans)  # the second time from the attribute table: the same


def test_the_exporter_sends_our_encoding_through_the_sdks_transport(traced, monkeypatch) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    from actors.telemetry import setup, wire
    from tests.support.otlp import Collector

    spans = varied_spans(*traced)
    encoded: list[int] = []
    real = wire.encode_request
    monkeypatch.setattr(wire, "encode_request", lambda s: encoded.append(len(s)) or real(s))
    collector = Collector()
    try:
        exporter = setup.exporter_class()(endpoint=collector.endpoint, timeout=5)
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        assert encoded == [len(spans)]  # this SDK has the transport we reach: our encoder ran
        assert sorted(s.span_id for s in collector.spans) == sorted(hexid(s.context.span_id, 16) for s in spans)
        collector.refuse = True
        assert exporter.export(spans[:1]) is SpanExportResult.FAILURE
    finally:
        collector.close()


def test_the_sampler_decides_once_per_request_and_an_unsampled_one_records_nothing() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    asked: list[str] = []

    class Counting:
        def __init__(self, inner: Any):
            self.inner = inner

        def should_sample(self, context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any) -> Any:
            asked.append(name)
            return self.inner.should_sample(context, trace_id, name, *args, **kwargs)

        def get_description(self) -> str:
            return "counting"

    for inner, recorded in ((ALWAYS_ON, True), (ALWAYS_OFF, False)):
        asked.clear()
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=Counting(inner))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        h = Harness({"a": [TransientError("503")], "b": []}, tracing=Tracing(provider.get_tracer("t")), retry_rounds=0)
        res = h.invoke(idempotency_key=f"once-{recorded}")
        assert res.ok and asked == [ROOT]  # not again for the store, attempt and provider spans
        assert (len(exporter.get_finished_spans()) == 7) is recorded and (res.trace_id is not None) is recorded
        # Unsampled, the context still travels (flag 00), so the providers follow the choice.
        assert parse_traceparent(h.adapters["b"].calls[0][2].traceparent).sampled is recorded
