"""Human-readable output: status tables, self-check findings, invoke results."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from actors.messages import InvokeResult, SelfCheckReport, StatusReport

HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "unknown": "dim", "unhealthy": "red"}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def status_table(report: StatusReport, console: Console) -> None:
    now = time.time()
    for cap in report.capabilities:
        table = Table(title=f"{cap.capability}", title_justify="left", expand=False)
        for col in ("#", "provider", "adapter", "health", "ok/calls", "latency ms", "ewma ms", "note"):
            table.add_column(col)
        for rank, p in enumerate(cap.providers, 1):
            health = p.health.value if hasattr(p.health, "value") else str(p.health)
            notes = []
            if not p.reachable:
                notes.append("actor not answering")
            if p.throttled_until and p.throttled_until > now:
                notes.append(f"throttled {p.throttled_until - now:.0f}s")
            if p.cooldown_until and p.cooldown_until > now:
                notes.append(f"cooling down {p.cooldown_until - now:.0f}s")
            if not p.delivers:
                notes.append("delivers nothing")
            if p.last_error and p.consecutive_failures:
                notes.append(f"last error: {p.last_error[:70]}")
            notes += p.warnings
            table.add_row(str(rank), p.name, p.adapter, f"[{HEALTH_STYLE.get(health, '')}]{health}[/]",
                          f"{p.total_calls - p.total_failures}/{p.total_calls}", _ms(p.latency_ms), _ms(p.latency_ewma_ms),
                          "; ".join(notes))
        console.print(table)
        if cap.recent_operations:
            last = cap.recent_operations[-5:]
            console.print("  recent: " + "  ".join(
                f"{'ok' if op.ok else 'FAIL'}:{op.provider or op.error_kind}" for op in last))


def self_check(report: SelfCheckReport, console: Console) -> None:
    for cap in report.capabilities:
        mark = "[green]served[/]" if cap.served else "[bold red]NOT SERVED[/]"
        probes = ", ".join(f"{p.provider} {'ok' if p.ok else p.error_kind}" for p in cap.probes)
        console.print(f"{cap.capability:<20} {mark}  ({probes})")
    if report.recommendations:
        console.print()
        for r in report.recommendations:
            style = SEVERITY_STYLE.get(r.severity, "")
            who = f"{r.capability}/{r.provider}" if r.provider else r.capability
            console.print(f"[{style}]{r.severity.upper():<8}[/] {who}: {r.problem}")
            if r.evidence:
                console.print(f"         evidence: {r.evidence}", highlight=False)
            console.print(f"         fix: {r.fix}", highlight=False)
    console.print()
    console.print("[green]all capabilities served[/]" if report.ok else "[bold red]some capability has no usable provider[/]")


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
    console.print(f"  request_id {result.request_id}", style="dim")


def as_json(obj: Any) -> str:
    import msgspec

    return msgspec.json.encode(obj).decode()
