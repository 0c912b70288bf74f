"""Human-readable output: status tables, self-check findings, the
reachability matrix, audit lines, invoke results."""

from __future__ import annotations

import time
from typing import Any

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from actors.messages import InvokeResult, SelfCheckReport, StatusReport

HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "unknown": "dim", "unhealthy": "red", "throttled": "magenta"}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ago(at: float | None, now: float) -> str:
    if not at:
        return "-"
    seconds = max(0.0, now - at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _health(p: Any) -> str:
    return p.health.value if hasattr(p.health, "value") else str(p.health)


# Under the tables when some provider has them: what the `other` column counts.
OTHER_LEGEND = ("other: calls the provider answered 429 (throttled) or refused as the request's fault (invalid, "
                "not supported): neither ok nor counted against its health")


def _provider_cell(p: Any) -> str:
    return p.name if p.adapter == p.name else f"{p.name} [dim]({p.adapter})[/]"


def provider_notes(p: Any, skipped: str | None, now: float) -> list[str]:
    """Why the router would skip the provider now, and what else an operator
    should know of it, each a few words."""
    notes = []
    if skipped:
        notes.append(f"skipped: {skipped}")
    if not p.reachable:
        notes.append("actor not answering")
    if p.throttled_until and p.throttled_until > now and not skipped:
        notes.append(f"throttled {p.throttled_until - now:.0f}s")
    if p.cooldown_until and p.cooldown_until > now and not skipped:
        notes.append(f"cooling down {p.cooldown_until - now:.0f}s")
    if not p.delivers:
        notes.append("delivers nothing" if not p.last_resort else "last resort: queues for later")
    if p.last_error and p.consecutive_failures:
        error = p.last_error.removeprefix(f"{p.name}: ")
        notes.append(f"last error ({p.last_error_kind}): {error[:80]}")
    if getattr(p, "delivery", None):
        notes.append(f"delivery {p.delivery}")
    return notes + list(p.warnings) + spend_note(p)


def status_table(report: StatusReport, console: Console, recent_errors: int = 3) -> None:
    """One table per capability, providers in the order the router would try
    them: health, every call counted (ok + failed + other = calls), latency;
    then, one line each, why a provider would be skipped now and what else
    to know of it, and the capability's latest errors. The notes are lines
    under the table, not a column, so a long one wraps across the terminal's
    width (80 columns fit the table)."""
    now = time.time()
    for line in report.exposures:
        console.print(f"[yellow]security[/]: {line}", highlight=False)
    chaos_line(report, console, now)
    any_other = False
    for cap in report.capabilities:
        ops = list(cap.recent_operations)
        ok = sum(1 for op in ops if op.ok)
        title = f"[bold]{cap.capability}[/]" + (f"  last {len(ops)} requests: {ok} ok, {len(ops) - ok} failed" if ops else "")
        title += "  [bold red]outlier panic: ejections ignored[/]" if getattr(cap, "panic", False) else ""
        table = Table(title=title, title_justify="left", expand=False, box=box.SIMPLE_HEAD, show_edge=False,
                      collapse_padding=True)
        for col, justify in (("#", "right"), ("provider", "left"), ("health", "left"), ("calls", "right"),
                             ("ok", "right"), ("failed", "right"), ("other", "right"), ("ewma ms", "right"),
                             ("checked", "left")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        notes: list[str] = []
        for rank, p in enumerate(cap.providers, 1):
            health = _health(p)
            ejected = f" [bold red]EJECTED {p.ejected_until - now:.0f}s ({p.ejection_reason})[/]" if (
                getattr(p, "ejected_until", None) and p.ejected_until > now) else ""
            if not ejected and getattr(p, "on_probation", False):
                ejected = f" [bold yellow]PROBATION ({p.ejection_reason})[/]"
            other = p.total_calls - p.total_ok - p.total_failures
            any_other = any_other or other > 0
            table.add_row(str(rank), _provider_cell(p), f"[{HEALTH_STYLE.get(health, '')}]{health}[/]{ejected}",
                          str(p.total_calls), str(p.total_ok), str(p.total_failures), str(other),
                          _ms(p.latency_ewma_ms), _ago(p.last_checked, now))
            said = provider_notes(p, cap.skipped.get(p.name), now)
            if said:
                notes.append(f"{rank} {p.name}: " + "; ".join(said))
        console.print(table)
        replicas = replica_line(getattr(cap, "replicas", []))
        if replicas:
            console.print(Padding(Text.from_markup(replicas), (0, 0, 0, 2)), highlight=False)
        for line in notes:  # wrapped lines indented under their provider
            console.print(Padding(Text(line), (0, 0, 0, 2)), highlight=False)
        errors = [op for op in ops if not op.ok][-recent_errors:]
        for op in errors:
            line = Text.assemble(("error", "red"), f" {_ago(op.at, now)}: {op.method} {op.error_kind}: {(op.error or '')[:140]}")
            console.print(Padding(line, (0, 0, 0, 2)), highlight=False)
        console.print()
    if any_other:
        console.print(OTHER_LEGEND, style="dim", highlight=False)
    placement_lines(report, console)


def placement_lines(report: StatusReport, console: Console) -> None:
    """Each actor's node, the head marked: an actor on the head of a
    multi-node cluster does not outlive the head's loss."""
    actors = getattr(report, "actors", None) or {}
    if not actors:
        return
    multi = getattr(report, "cluster_nodes", 0) > 1
    console.print("[bold]placement[/]")
    for name, node in sorted(actors.items()):
        where = f"{node.address or '?'} ({node.node_id[:12]}"
        where += ", [bold yellow]head[/]" if node.head and multi else (", head" if node.head else "")
        where += ", did not answer now: last known" if not node.answered else ""
        console.print(f"  {name}  on {where})", highlight=False)


def replica_line(replicas: list[Any]) -> str:
    """`routers: 2 of 2 alive (#0 node 3f2a1c in flight 4; #1 node 9b7e00 in flight 3)`; for a single
    router, empty unless it is overloaded (refusing requests: actors/policy/admission.py)."""
    if len(replicas) < 2:
        return "".join(f"router: [bold red]overloaded, refusing new requests[/] (in flight {r.in_flight}, "
                       f"{r.refused} refused)" for r in replicas if r.alive and r.overloaded)
    alive = sum(1 for r in replicas if r.alive)
    style = "green" if alive == len(replicas) else ("yellow" if alive else "bold red")
    parts = [f"#{r.index} node {(r.node_id or '?')[:6]} in flight {r.in_flight}"
             + (f" [bold red]overloaded[/] ({r.refused} refused)" if r.overloaded else "") if r.alive
             else f"#{r.index} [bold red]not answering[/] ({r.error})" for r in replicas]
    return f"routers: [{style}]{alive} of {len(replicas)} alive[/] (" + "; ".join(parts) + ")"


def fault_text(f: Any, now: float | None = None) -> str:
    """A fault (or a status' FaultStatus) in a few words: `100% transient, +0 ms, until 14:05:10 UTC (4m left), by ann@ops-1`."""
    now = time.time() if now is None else now
    parts = []
    if f.fail_rate:
        parts.append(f"{f.fail_rate:.0%} {f.error}")
    if f.latency_ms:
        parts.append(f"+{f.latency_ms:.0f} ms")
    left = max(0.0, f.expires_at - now)
    until = time.strftime("%H:%M:%S", time.gmtime(f.expires_at))
    return f"{', '.join(parts)} until {until} UTC ({left:.0f}s left), by {f.injected_by}"


def chaos_line(report: StatusReport, console: Console, now: float) -> None:
    """`chaos: 1 active fault (email_sending/resend: 30% transient until 14:05:10 UTC (...), by ann@ops-1)`."""
    faults = [f"{c.capability}/{p.name}: {fault_text(p.fault, now)}" for c in report.capabilities for p in c.providers
              if p.fault is not None]
    if faults:
        console.print(f"[bold magenta]chaos[/]: {len(faults)} active fault{'s' if len(faults) > 1 else ''} "
                      f"({'; '.join(faults)})", highlight=False)
def spend_note(p: Any) -> list[str]:
    """"spent 80.00 USD, 1,204 calls left until Jun 01 00:00 UTC" (cost and quotas), or nothing."""
    if p.currency is None and p.quota_limit is None and p.balance_left is None:
        return []
    parts = [f"spent {p.spend:.2f} {p.currency or ''}".rstrip()]
    if p.quota_limit is not None:
        until = time.strftime("%b %d %H:%M UTC", time.gmtime(p.quota_period_end)) if p.quota_period_end else ""
        parts.append(f"{p.quota_left:,} calls left until {until}".rstrip())
    if p.balance_left is not None:
        parts.append(f"balance {p.balance_left:,.0f} calls")
    return [", ".join(parts) + (f" (quota_exhausted: {p.quota_exhausted})" if p.quota_exhausted else "")]


def reachability_table(reach: Any, console: Console) -> None:
    """Providers (rows) by node (columns): ok, or the kind of failure."""
    if not reach:
        return
    nodes = reach.get("nodes", []) if isinstance(reach, dict) else []
    if not nodes:
        return
    labels = [_node_label(n["node"]) for n in nodes]
    rows: dict[str, dict[str, str]] = {}
    actor_nodes = reach.get("actor_nodes", {})
    for n, label in zip(nodes, labels, strict=True):
        for r in n.get("results", []):
            rows.setdefault(f"{r['capability']}/{r['provider']}", {})[label] = "ok" if r["ok"] else str(r["error_kind"])
    table = Table(title="reachability: each provider's probe from each node (* where its actor runs)",
                  title_justify="left", expand=False)
    table.add_column("provider")
    for label in labels:
        table.add_column(label)
    for key in sorted(rows):
        cells = []
        for n, label in zip(nodes, labels, strict=True):
            value = rows[key].get(label, "-" if n.get("error") is None else "?")
            mark = "*" if actor_nodes.get(key) == n["node"]["node_id"] else ""
            cells.append(f"[green]{value}{mark}[/]" if value == "ok" else f"[red]{value}{mark}[/]")
        table.add_row(key, *cells)
    console.print(table)
    for n, label in zip(nodes, labels, strict=True):
        if n.get("error"):
            console.print(f"  [yellow]node {label}[/]: {n['error']}", highlight=False)


def _node_label(node: dict[str, Any]) -> str:
    return f"{node['address']} ({node['node_id'][:8]}{', head' if node.get('is_head') else ''})"


def self_check(report: SelfCheckReport, console: Console, reach: Any = None) -> None:
    for cap in report.capabilities:
        mark = "[green]served[/]" if cap.served else "[bold red]NOT SERVED[/]"
        probes = ", ".join(f"{p.provider} {'ok' if p.ok else p.error_kind}" for p in cap.probes)
        console.print(f"{cap.capability:<20} {mark}  ({probes})")
    if reach:
        console.print()
        reachability_table(reach, console)
    if report.recommendations:
        console.print()
        for r in report.recommendations:
            style = SEVERITY_STYLE.get(r.severity, "")
            who = f"{r.capability}/{r.provider}" if r.provider else r.capability
            console.print(f"[{style}]{r.severity.upper():<8}[/] {who}: {r.problem}", highlight=False)
            if r.evidence:
                console.print(f"         evidence: {r.evidence}", highlight=False)
            console.print(f"         fix: {r.fix}", highlight=False)
    console.print()
    console.print("[green]all capabilities served[/]" if report.ok else "[bold red]some capability has no usable provider[/]")


def audit_line(rec: dict[str, Any]) -> str:
    """One audit record on one line."""
    at = time.strftime("%H:%M:%S", time.localtime(rec.get("at", 0))) + f".{int(rec.get('at', 0) * 1000) % 1000:03d}"
    if rec.get("type") == "chaos":  # a live fault injected, cleared or expired (actors/ops/chaos_audit.py)
        f = rec.get("fault") or {}
        return (f"{at} {rec.get('capability')}/{rec.get('provider')} chaos {rec.get('event')} fault {f.get('id')}: "
                f"fail {f.get('fail_rate', 0):.0%} {f.get('error')}, +{f.get('latency_ms', 0):.0f} ms"
                + (f" by {rec['by']}" if rec.get("by") else ""))
    if rec.get("type") == "outlier":  # an outlier ejection event (actors/router/ejection.py)
        return f"{at} {rec.get('capability')} outlier {rec.get('event')} " + " ".join(
            f"{k}={rec[k]}" for k in ("name", "reason", "until", "ejections", "available", "total") if k in rec)
    head = f"{at} {rec.get('capability')}.{rec.get('method')}"
    if rec.get("ok"):
        head += f" ok via {rec.get('provider')}"
    else:
        head += f" FAIL {rec.get('outcome')}"
    head += f" {rec.get('elapsed_ms', 0):.0f}ms"
    flags = [f for f in ("replayed", "dry_run", "draining") if rec.get(f)]
    if rec.get("outbox_id") is not None:
        flags.append(f"outbox #{rec['outbox_id']}")
    if flags:
        head += f" [{', '.join(flags)}]"
    if rec.get("key"):
        head += f" key={rec['key']}"
    attempts = [f"{a['provider']} {'ok' if a['ok'] else a['error_kind']} {a['latency_ms']:.0f}ms"
                + (" (hedge)" if a.get("hedge") else "") + (" (trial)" if a.get("trial") else "")
                for a in rec.get("attempts", [])]
    if attempts:
        head += " | " + ", ".join(attempts)
    if rec.get("skipped"):
        head += " | skipped " + "; ".join(f"{k}: {v}" for k, v in rec["skipped"].items())
    if not rec.get("ok") and rec.get("error"):
        head += f" | {rec['error'][:200]}"
    return head


def invoke_result(result: InvokeResult, console: Console) -> None:
    if result.ok:
        console.print(f"[green]ok[/] via {result.provider} in {result.elapsed_ms:.0f} ms"
                      + (" (replayed: nothing sent again)" if result.replayed else "")
                      + (" (dry run)" if result.dry_run else ""))
        console.print(result.value)
    else:
        assert result.error is not None
        console.print(f"[bold red]failed[/]: {result.error.kind}: {result.error.message}", highlight=False)
    for a in result.attempts:
        console.print(f"  attempt {a.provider}: {'ok' if a.ok else a.error_kind} {a.latency_ms:.0f} ms"
                      + (f" - {a.error}" if a.error else ""), highlight=False)
    for skip in result.skips:
        console.print(f"  skipped {skip.provider}: {skip.reason}" + (f" - {skip.detail}" if skip.detail else ""),
                      highlight=False)
    console.print(f"  request_id {result.request_id}", style="dim")


def as_json(obj: Any) -> str:
    import msgspec

    return msgspec.json.encode(obj).decode()
