"""Traces on Ray, end to end (issue 23): a driver with a span of its own, the
router and two providers (the first always failing) export over OTLP/HTTP
to a collector on loopback (tests/support/otlp.py decodes the official
protobuf messages). One trace: the driver's span, the router's request span
under it, an attempt span per provider under that, each provider's span
under its attempt, from four processes; its id is the InvokeResult's and the
audit line's. Then the collector refuses, then it is gone: requests are
served all the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.errors import ErrorKind
from tests.support.otlp import Collector

pytestmark = pytest.mark.ray

EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}
CLIENT, SERVER = 3, 2  # the protobuf's SpanKind values


def config(ledger: Path, endpoint: str) -> dict[str, Any]:
    sim = {"latency_ms": 2, "ledger": str(ledger)}
    return {"telemetry": {"traces": {"endpoint": endpoint, "sampling_ratio": 1.0, "export_timeout_s": 1.0}},
            "capabilities": {"email_sending": {"providers": [
                {"name": "primary", "adapter": "simulated", "settings": {**sim, "seed": 1, "failure_rate": 1.0}},
                {"name": "backup", "adapter": "simulated", "settings": {**sim, "seed": 2}}]}}}


def driver_tracer(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "driver", "service.instance.id": "driver"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def test_one_trace_across_driver_router_and_providers_and_a_dead_collector_changes_nothing(
        gateway: Any, ray_cluster: Any, tmp_path: Path) -> None:
    collector = Collector()
    try:
        gw = gateway(config(tmp_path / "ledger.jsonl", collector.endpoint))
        provider = driver_tracer(collector.endpoint)
        with provider.get_tracer("test").start_as_current_span("campaign step") as driver_span:
            res = gw.invoke("email_sending", "send_email", EMAIL, idempotency_key="lead-7", deadline_s=30)
        provider.shutdown()
        assert res.ok and res.provider == "backup"
        assert [(a.provider, a.error_kind) for a in res.attempts] == [("primary", ErrorKind.TRANSIENT), ("backup", None)]
        assert res.trace_id == f"{driver_span.get_span_context().trace_id:032x}"

        names = {"campaign step", "email_sending.send_email", "attempt primary", "attempt backup",
                 "provider primary", "provider backup"}
        assert collector.wait_for(lambda: names <= {s.name for s in collector.trace(res.trace_id)}), \
            sorted(s.name for s in collector.spans)
        spans = {s.name: s for s in collector.trace(res.trace_id) if s.name in names}
        driver, root = spans["campaign step"], spans["email_sending.send_email"]
        assert root.parent_span_id == driver.span_id and root.span_id == res.span_id and root.kind == SERVER
        assert root.attributes["aicmo.outcome"] == "ok" and root.attributes["aicmo.provider"] == "backup"
        for name in ("primary", "backup"):
            attempt, call = spans[f"attempt {name}"], spans[f"provider {name}"]
            assert attempt.parent_span_id == root.span_id and attempt.kind == CLIENT
            assert call.parent_span_id == attempt.span_id and call.kind == SERVER
            assert call.resource["service.instance.id"] == f"provider:email_sending:{name}"
        assert spans["attempt primary"].attributes["error.type"] == "transient"
        assert "error.type" not in spans["attempt backup"].attributes
        # Four processes: the driver, the router, each provider.
        assert {s.resource["service.instance.id"] for s in spans.values()} == {
            "driver", "router:email_sending", "provider:email_sending:primary", "provider:email_sending:backup"}

        router = gw.router("email_sending")
        ray_cluster.get(router.flush_ops.remote(), timeout=30)
        records = ray_cluster.get(router.audit_tail.remote(10), timeout=30)["records"]
        assert [r["trace_id"] for r in records if r.get("request_id") == res.request_id] == [res.trace_id]

        # The collector refuses, then is gone: every request is served, its trace id still given.
        collector.refuse = True
        refused = [gw.invoke("email_sending", "send_email", EMAIL, deadline_s=30) for _ in range(5)]
        collector.close()
        gone = [gw.invoke("email_sending", "send_email", EMAIL, deadline_s=30) for _ in range(5)]
        assert all(r.ok and r.provider == "backup" and len(r.trace_id) == 32 for r in refused + gone)
        assert len({r.trace_id for r in refused + gone}) == 10  # a trace each, none from the driver now
    finally:
        collector.close()
