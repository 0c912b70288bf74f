"""Metrics without Ray: what a router records per decision, and a Grafana
dashboard that only asks for metrics and labels the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from actors.errors import ErrorKind, TransientError
from actors.messages import Attempt, Decision
from actors.ops.metrics import DEFINITIONS, HeldGauges, MemoryRecorder, RouterMetrics, exported_name
from tests.ops.helpers import run, wired

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "aicmo-gateway.json"
PAYLOAD = {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"}


def test_requests_attempts_fallbacks_and_latency_per_decision(tmp_path: Path) -> None:
    h, ops, rec = wired({"primary": [TransientError("boom"), TransientError("boom")], "backup": []}, tmp_path)

    async def scenario() -> None:
        for i in range(3):
            await h.router.invoke("send_email", PAYLOAD, idempotency_key=f"k{i}")
        await h.router.invoke("send_email", {"to": []})
        ops.metrics.flush()

    run(scenario())
    assert rec.counter("aicmo_requests") == 4
    # The first request falls back from primary to backup; the ranking then tries backup first.
    assert rec.counter("aicmo_requests", outcome="ok", provider="backup", method="send_email") == 3
    assert rec.counter("aicmo_requests", outcome="invalid_request", provider="none") == 1
    assert rec.counter("aicmo_attempts", provider="primary", outcome="transient", role="first") == 1
    assert rec.counter("aicmo_attempts", provider="backup", outcome="ok", role="fallback") == 1
    assert rec.counter("aicmo_attempts", provider="backup", outcome="ok", role="first") == 2
    assert rec.counter("aicmo_fallbacks", from_provider="primary", to_provider="backup") == 1
    latencies = [o for o in rec.observations if o[0] == "aicmo_request_latency_ms"]
    assert len(latencies) == 4 and all(v >= 0 for _, v, _ in latencies)


def test_hedges_are_not_fallbacks() -> None:
    rec = MemoryRecorder()
    m = RouterMetrics(rec, "lead_enrichment")
    m.observe_decision(Decision(at=0, capability="lead_enrichment", method="enrich_person", request_id="r", ok=True,
                                provider="b", attempts=[Attempt(provider="a", ok=False, error_kind=ErrorKind.CANCELLED),
                                                        Attempt(provider="b", ok=True, hedge=True)]))
    m.flush()
    assert rec.counter("aicmo_attempts", role="hedge", provider="b") == 1
    assert rec.counter("aicmo_fallbacks") == 0
    # Counts are summed in memory and handed over once per flush.
    for _ in range(50):
        m.count("aicmo_requests", "lead_enrichment", "enrich_person", "b", "ok", "0")
    m.flush()
    assert rec.counter("aicmo_requests", provider="b") == 51


def test_each_router_replica_counts_under_its_own_label() -> None:
    rec = MemoryRecorder()
    for replica in (0, 1):
        m = RouterMetrics(rec, "email_sending", replica)
        m.observe_decision(Decision(at=0, capability="email_sending", method="send_email", request_id="r", ok=True,
                                    provider="a", attempts=[Attempt(provider="a", ok=True)]))
        m.flush()
    assert rec.counter("aicmo_requests", replica="0") == 1 and rec.counter("aicmo_requests", replica="1") == 1


class SetLog(MemoryRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.sets: list[tuple[str, float, dict[str, str]]] = []

    def set(self, name: str, value: float, tags: dict[str, str]) -> None:
        super().set(name, value, tags)
        self.sets.append((name, value, tags))


def test_gauges_set_on_events_are_reported_again_until_forgotten() -> None:
    rec = SetLog()
    held = HeldGauges(rec)
    held.set("aicmo_capability_served", 1, {"capability": "email_sending"})
    held.set("aicmo_reachable", 0, {"capability": "webhook_dispatch", "provider": "r", "node": "b"})
    held.set("aicmo_capability_served", 0, {"capability": "email_sending"})  # the latest value wins
    rec.sets.clear()
    held.refresh()
    assert sorted((n, v) for n, v, _ in rec.sets) == [("aicmo_capability_served", 0), ("aicmo_reachable", 0)]
    held.forget("aicmo_reachable")
    rec.sets.clear()
    held.refresh()
    assert [(n, v, t) for n, v, t in rec.sets] == [("aicmo_capability_served", 0, {"capability": "email_sending"})]


def _metric_and_labels(expr: str) -> list[tuple[str, set[str]]]:
    out = []
    for m in re.finditer(r"\b(ray_aicmo_\w+)(\{[^}]*\})?", expr):
        labels = set(re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", m.group(2) or ""))
        out.append((m.group(1), labels))
    return out


def test_the_grafana_dashboard_asks_only_for_what_is_exported() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exported = {exported_name(n): d for n, d in DEFINITIONS.items()}
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    used = set()
    for p in panels:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            for name, labels in _metric_and_labels(t["expr"]):
                base = re.sub(r"_(bucket|count|sum)$", "", name) if name not in exported else name
                assert base in exported, (p["title"], name)
                d = exported[base]
                allowed = set(d.tag_keys) | ({"le"} if d.kind == "histogram" else set())
                assert labels <= allowed, (p["title"], labels - allowed)
                for group in re.findall(r"by \(([^)]*)\)", t["expr"]):
                    assert {g.strip() for g in group.split(",")} <= allowed, (p["title"], group)
                used.add(base)
    # The panels an operator needs first are there.
    assert {"ray_aicmo_requests_total", "ray_aicmo_fallbacks_total", "ray_aicmo_attempts_total",
            "ray_aicmo_provider_health", "ray_aicmo_provider_latency_ms", "ray_aicmo_outbox_depth",
            "ray_aicmo_reachable"} <= used
    assert dash["__inputs"][0]["pluginId"] == "prometheus"


def test_a_method_the_capability_does_not_have_is_one_bounded_label(tmp_path: Path) -> None:
    # A caller controls the method name: an address there must not become a
    # label, and a thousand made-up names must not become a thousand series.
    h, ops, rec = wired({"primary": []}, tmp_path)

    async def scenario() -> None:
        for i in range(20):
            await h.router.invoke(f"lead{i}@example.com", PAYLOAD)
        await h.router.invoke("send_email", PAYLOAD)
        ops.metrics.flush()

    run(scenario())
    methods = {dict(tags)["method"] for name, tags in rec.counters if name == "aicmo_requests"}
    assert methods == {"unknown", "send_email"}
    assert rec.counter("aicmo_requests", method="unknown", outcome="unknown_method") == 20
