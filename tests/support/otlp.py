"""A tiny OTLP/HTTP traces collector on loopback (stdlib http.server): it
decodes each export with the official `opentelemetry-proto` messages
(ExportTraceServiceRequest) and keeps the spans, flattened, with their
resource's attributes. `refuse` makes it answer 503 (a collector that is up
but refuses); `close()` takes it down. Used by the end-to-end test of traces
(tests/integration/test_traces_on_ray.py) and bench/tracing.py."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class CollectedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    start_ns: int = 0
    end_ns: int = 0


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    return getattr(v, which) if which else None


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def decode(body: bytes) -> list[CollectedSpan]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out = []
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(CollectedSpan(
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), parent_span_id=s.parent_span_id.hex(),
                    name=s.name, kind=s.kind, attributes=_attributes(s.attributes), resource=resource,
                    events=[(e.name, _attributes(e.attributes)) for e in s.events],
                    links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                    start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano))
    return out


def trace_ids(body: bytes) -> list[bytes]:
    """Each span's trace id, and nothing else decoded (a counting collector's
    work: flattening every span's attributes, as decode does, took a core's
    share of the benchmark's two)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return [s.trace_id for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def render(spans: list[CollectedSpan]) -> str:
    """One trace as an indented tree: offset and duration in ms, the process, the main attributes."""
    by_parent: dict[str, list[CollectedSpan]] = {}
    ids = {s.span_id for s in spans}
    for s in sorted(spans, key=lambda s: s.start_ns):
        by_parent.setdefault(s.parent_span_id if s.parent_span_id in ids else "", []).append(s)
    t0 = min(s.start_ns for s in spans)
    shown = ("aicmo.outcome", "aicmo.round", "aicmo.attempt", "aicmo.hedged", "aicmo.cancelled", "error.type",
             "aicmo.retry_after_s", "aicmo.idempotency_key.sha256", "aicmo.store.operation")
    lines = []

    def walk(parent: str, depth: int) -> None:
        for s in by_parent.get(parent, []):
            attrs = " ".join(f"{k.removeprefix('aicmo.')}={s.attributes[k]}" for k in shown if k in s.attributes)
            lines.append(f"{(s.start_ns - t0) / 1e6:7.1f} ms {(s.end_ns - s.start_ns) / 1e6:7.1f} ms  "
                         f"{'  ' * depth}{s.name}  [{s.resource.get('service.instance.id', '?')}]  {attrs}".rstrip())
            for name, ev in s.events:
                lines.append(f"{'':22}{'  ' * (depth + 1)}event {name} {ev}")
            walk(s.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)


class Collector:
    def __init__(self, count_only: bool = False) -> None:
        """`count_only`: keep each span's trace id only (`ids`), not the span."""
        self.spans: list[CollectedSpan] = []
        self.ids: list[bytes] = []
        self.exports = 0
        self.refuse = False
        self._closed = False
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if collector.refuse:
                    self.send_response(503)
                    self.end_headers()
                    return
                traces = self.path == "/v1/traces"
                spans = decode(body) if traces and not count_only else []
                ids = trace_ids(body) if traces and count_only else []
                with collector._lock:
                    collector.spans.extend(spans)
                    collector.ids.extend(ids)
                    collector.exports += 1
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="otlp-collector")
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1/traces"

    def trace(self, trace_id: str) -> list[CollectedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, check: Callable[[], bool], timeout_s: float = 60.0) -> bool:
        """Waits for a condition on what has arrived (exports are batched: they come when they come)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.1)
        return check()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()


def _serve_counting(port: Any, traces: Any, spans: Any, stop: Any) -> None:
    """A collector process's body: reads each span's trace id, counts traces and spans."""
    collector = Collector(count_only=True)
    port.value = int(collector.endpoint.rsplit(":", 1)[1].split("/")[0])
    seen: set[bytes] = set()
    while not stop.wait(0.2):
        with collector._lock:
            new, collector.ids = collector.ids, []
        seen.update(new)
        spans.value += len(new)
        traces.value = len(seen)
    collector.close()


class CollectorProcess:
    """The collector in a process of its own (benchmarks: decoding must not
    take the driver's GIL); it only counts what it receives."""

    def __init__(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._port, self._traces, self._spans = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
        self._stop = ctx.Event()
        self._process = ctx.Process(target=_serve_counting, args=(self._port, self._traces, self._spans, self._stop),
                                    daemon=True)
        self._process.start()
        deadline = time.monotonic() + 30
        while self._port.value == 0 and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port.value}/v1/traces"

    @property
    def traces(self) -> int:
        return self._traces.value

    @property
    def spans(self) -> int:
        return self._spans.value

    def close(self) -> None:
        self._stop.set()
        self._process.join(10)
