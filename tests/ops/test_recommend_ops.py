"""Recommendations from trends, reachability and the actors' ops reports,
as pure code: hand-built samples and matrices, no Ray, no clock."""

from __future__ import annotations

from actors.config import parse_config
from actors.errors import ErrorKind
from actors.messages import ProbeResult, ProviderStatus
from actors.ops.history import History, union_length
from actors.ops.reach import NodeInfo, NodeProbes, Reachability
from actors.ops.recommend import NodeReach, facts_of, for_ops, for_reachability, for_trends
from actors.policy.health import Health
from actors.specs import build_spec
from actors.supervisor.actor import build_self_check

RAW = {"capabilities": {
    "email_sending": {"providers": [
        {"name": "smtp", "adapter": "simulated"}, {"name": "sendgrid", "adapter": "simulated"},
        {"name": "mailgun", "adapter": "simulated"}]},
    "lead_enrichment": {"providers": [{"name": "apollo", "adapter": "simulated"}]},
}}
SPEC = build_spec(parse_config(RAW, env={}))
EMAIL = {p.name: facts_of(p) for p in SPEC.capabilities[0].providers}


def status(name: str, cap: str = "email_sending", **kw) -> ProviderStatus:
    return ProviderStatus(name=name, capability=cap, adapter="simulated", **kw)


def test_union_length_merges_overlaps() -> None:
    assert union_length([(0, 10), (5, 20), (30, 40), (35, 36)]) == 30
    assert union_length([]) == 0


def test_throttled_for_most_of_the_hour_names_the_limit_setting() -> None:
    hist = History()
    t0 = 10_000.0
    # Every 60 s for an hour: smtp is caught throttled in 40 of 60 minutes, each
    # time by a 429 that arrived 20 s before the sample and asked for 60 s.
    for i in range(60):
        at = t0 + 60 * i
        throttled = i % 3 != 0
        hist.add(status("smtp", last_error_kind=ErrorKind.RATE_LIMITED if throttled else None,
                        last_checked=at - 20 if throttled else at, throttled_until=at + 40 if throttled else None), at)
        hist.add(status("sendgrid", last_checked=at), at)
    trends = hist.trends("email_sending", now=t0 + 3600)
    assert trends["smtp"].observed_s == 3600
    assert 0.6 * 3600 < trends["smtp"].throttled_s < 0.75 * 3600
    assert trends["sendgrid"].throttled_s == 0
    recs = for_trends(list(EMAIL.values()), trends)
    assert [(r.provider, r.severity) for r in recs] == [("smtp", "warning")]
    assert "most of the last 60 minutes" in recs[0].problem
    assert "capabilities.email_sending.providers[0].policy.provider.rate_limit_per_s" in recs[0].fix
    assert "add another provider under capabilities.email_sending.providers" in recs[0].fix


def test_a_short_watch_says_nothing_yet() -> None:
    hist = History()
    for i in range(5):  # four minutes, throttled all along
        hist.add(status("smtp", last_error_kind=ErrorKind.RATE_LIMITED, last_checked=60.0 * i,
                        throttled_until=60.0 * i + 120), 60.0 * i)
    assert for_trends(list(EMAIL.values()), hist.trends("email_sending", now=240.0)) == []


def test_consistently_slower_than_peers_says_reorder_and_replaces_the_snapshot_hint() -> None:
    hist = History()
    for i in range(20):
        at = 1000.0 + 60 * i
        hist.add(status("smtp", latency_ewma_ms=900.0, total_calls=100), at)
        hist.add(status("sendgrid", latency_ewma_ms=80.0, total_calls=100), at)
        hist.add(status("mailgun", latency_ewma_ms=100.0, total_calls=100), at)
    now = 1000.0 + 60 * 19
    trends = hist.trends("email_sending", now)
    assert trends["smtp"].slower_samples == trends["smtp"].comparable_samples == 20
    assert trends["sendgrid"].slower_samples == 0
    statuses = {"smtp": status("smtp", latency_ewma_ms=900.0, total_calls=100),
                "sendgrid": status("sendgrid", latency_ewma_ms=80.0, total_calls=100),
                "mailgun": status("mailgun", latency_ewma_ms=100.0, total_calls=100)}
    probes = {("email_sending", n): ProbeResult(provider=n, capability="email_sending", ok=True) for n in statuses}
    probes[("lead_enrichment", "apollo")] = ProbeResult(provider="apollo", capability="lead_enrichment", ok=True)
    report = build_self_check(SPEC, probes, {("email_sending", n): s for n, s in statuses.items()}, now,
                              trends={"email_sending": trends})
    slow = [r for r in report.recommendations if r.provider == "smtp" and "slower" in r.problem]
    assert len(slow) == 1 and slow[0].severity == "warning" and "consistently" in slow[0].problem
    assert "list it after its faster peers under capabilities.email_sending.providers" in slow[0].fix
    assert "20 of 20 samples" in slow[0].evidence


def test_a_node_that_cannot_reach_a_provider_is_named() -> None:
    facts = EMAIL["sendgrid"]
    reach = [NodeReach(node="10.0.0.1 (aaaa1111, head)", node_id="a" * 56, ok=True, hosts_actor=True),
             NodeReach(node="10.0.0.2 (bbbb2222)", node_id="b" * 56, ok=False, error_kind=ErrorKind.TRANSIENT,
                       error="sendgrid: cannot connect: [Errno 111] Connection refused")]
    (rec,) = for_reachability(facts, reach)
    assert rec.severity == "warning" and rec.provider == "sendgrid"
    assert rec.problem == "node 10.0.0.2 (bbbb2222) cannot reach sendgrid"
    assert "Connection refused" in rec.evidence and "passes from 10.0.0.1 (aaaa1111, head)" in rec.evidence
    assert "HTTPS_PROXY" in rec.fix and "capabilities.email_sending.providers[1].settings" in rec.fix
    # Where the provider's actor runs, it is critical: its traffic fails.
    moved = [NodeReach(node=r.node, node_id=r.node_id, ok=r.ok, error_kind=r.error_kind, error=r.error,
                       hosts_actor=not r.hosts_actor) for r in reach]
    assert for_reachability(facts, moved)[0].severity == "critical"
    # Down from everywhere, or up everywhere: not a node's problem.
    assert for_reachability(facts, [reach[1]]) == []
    assert for_reachability(facts, [reach[0]]) == []


def test_the_matrix_feeds_the_self_check_and_ignores_nodes_whose_task_failed() -> None:
    head = NodeInfo(node_id="a" * 56, address="10.0.0.1", is_head=True)
    worker = NodeInfo(node_id="b" * 56, address="10.0.0.2")
    broken = NodeInfo(node_id="c" * 56, address="10.0.0.3")
    ok = ProbeResult(provider="sendgrid", capability="email_sending", ok=True)
    bad = ProbeResult(provider="sendgrid", capability="email_sending", ok=False, error_kind=ErrorKind.TIMEOUT, error="t")
    reach = Reachability(generated_at=1.0, nodes=[NodeProbes(node=head, results=[ok]), NodeProbes(node=worker, results=[bad]),
                                                  NodeProbes(node=broken, error="the probe task did not finish")],
                         actor_nodes={"email_sending/sendgrid": head.node_id})
    assert reach.matrix() == {"email_sending/sendgrid": {head.label: "ok", worker.label: "timeout"}}
    probes = {("email_sending", n): ProbeResult(provider=n, capability="email_sending", ok=True) for n in EMAIL}
    report = build_self_check(SPEC, probes, {}, 2.0, reach=reach)
    nodes = [r for r in report.recommendations if r.problem.startswith("node ")]
    assert [r.problem for r in nodes] == [f"node {worker.label} cannot reach sendgrid"]


def test_hooks_and_audit_problems_become_recommendations() -> None:
    report = {"hooks": {"hooks": {"acme.alerts:page": {"calls": 10, "failures": 4, "timeouts": 0, "last_error": "KeyError: 'x'"}},
                        "load_errors": {"acme.missing:hook": "cannot import 'acme.missing'"}, "dropped": 0},
              "audit": {"path": "/s/audit/audit-email_sending.jsonl", "written": 5, "dropped": 7,
                        "last_error": "OSError: [Errno 28] No space left on device"}}
    recs = for_ops("email_sending", "router:email_sending", report)
    problems = {r.problem: r for r in recs}
    assert "hook acme.missing:hook cannot be loaded in router:email_sending" in problems
    assert "4 of 10 calls failed" in problems["hook acme.alerts:page fails in router:email_sending"].evidence
    audit = problems["the audit log of router:email_sending cannot be written"]
    assert audit.severity == "critical" and "No space left" in audit.evidence and "state.url" in audit.fix
    assert for_ops("x", "router:x", {"hooks": {"hooks": {}, "load_errors": {}, "dropped": 0}, "audit": None}) == []


def test_health_values_in_samples_are_plain_strings() -> None:
    hist = History()
    hist.add(status("smtp", health=Health.THROTTLED), 1.0)
    assert hist.samples("email_sending", "smtp")[0].health == "throttled"


def test_each_node_receives_only_the_credentials_of_providers_it_could_host() -> None:
    import pickle

    from actors.config import parse_config
    from actors.ops.reach import node_targets
    from actors.specs import build_spec

    raw = {"capabilities": {"email_sending": {"providers": [
        {"name": "egress_only", "adapter": "sendgrid", "placement": {"resources": {"egress": 0.01}},
         "settings": {"api_key": "${SENDGRID_API_KEY}"}},
        {"name": "anywhere", "adapter": "mailgun", "settings": {"api_key": "mg-canary-Key-1", "domain": "mg.example.com"}},
        {"name": "sim", "adapter": "simulated"}]}}}
    spec = build_spec(parse_config(raw, env={"SENDGRID_API_KEY": "sg-canary-Key-2"}))
    providers = spec.capabilities[0].providers
    gateway = NodeInfo(node_id="a" * 56, address="10.0.0.1", resources={"CPU": 4.0, "egress": 1.0})
    plain = NodeInfo(node_id="b" * 56, address="10.0.0.2", resources={"CPU": 4.0})
    sent = node_targets([gateway, plain], providers)
    assert [t.name for t in sent[gateway.node_id]] == ["egress_only", "anywhere"]
    assert [t.name for t in sent[plain.node_id]] == ["anywhere"]   # it could never run egress_only's actor
    shipped = pickle.dumps(sent[plain.node_id])
    assert b"sg-canary-Key-2" not in shipped and b"mg-canary-Key-1" in shipped  # what its own probe needs
    assert not hasattr(sent[plain.node_id][0], "env_secrets")  # an adapter and its settings, not the whole spec
