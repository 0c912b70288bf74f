"""`aicmo-gateway demo`: the main job on a laptop, with no credentials.

A local Ray, the gateway deployed from the embedded default config, and a
small campaign: for each lead verify the address, enrich, upsert into the
CRM, send the welcome email and dispatch a webhook; an announcement post per
batch; at the end fetch replies. Midway the primary email provider breaks and
the enrichment API starts throttling. At the end: what happened per
capability, provider health, the self-check, and the ledger's verdict on
duplicates (every welcome email delivered exactly once, even when re-sent).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "default.yaml"
BATCH = 50


def _lead_requests(i: int) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    email = f"lead{i}@example.com"
    return {
        "email_verification": ("verify_email", {"email": email}, {}),
        "lead_enrichment": ("enrich_person", {"email": email}, {}),
        "crm_sync": ("upsert_contact", {"email": email, "first_name": f"Lead{i}", "company": "Example"}, {}),
        "email_sending": ("send_email", {"to": [email], "subject": "Welcome", "text": f"Hello Lead{i}"},
                          {"idempotency_key": f"lead-{i}-welcome"}),
        "webhook_dispatch": ("dispatch", {"event": "lead.processed", "data": {"lead": i}},
                             {"idempotency_key": f"lead-{i}-processed"}),
    }


class Tally:
    def __init__(self) -> None:
        self.by_cap: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, cap: str, results: list[Any]) -> None:
        c = self.by_cap[cap]
        for r in results:
            c["requests"] += 1
            if r.ok:
                c["ok"] += 1
                c[f"via {r.provider}"] += 1
                if r.replayed:
                    c["replayed"] += 1
                elif len(r.attempts) > 1:
                    c["fallbacks"] += 1
            else:
                c["failed"] += 1
                c[f"error {r.error.kind}"] += 1


def run_demo(leads: int = 200, config_path: str | None = None) -> int:
    import logging

    import ray

    from actors.cli import render
    from actors.config import load_config
    from actors.runtime.deploy import deploy, teardown
    from actors.runtime.specs import build_spec

    out = Console(highlight=False, width=None if os.isatty(1) else 110)
    workdir = Path(tempfile.mkdtemp(prefix="aicmo-demo-"))
    ledger = workdir / "ledger.jsonl"
    os.environ["AICMO_LEDGER"] = str(ledger)
    cfg = load_config(config_path or DEFAULT_CONFIG)
    namespace = f"{cfg.namespace}-demo"
    cfg = cfg.model_copy(update={"namespace": namespace})

    started = time.monotonic()
    out.print(f"[bold]aicmo-gateway demo[/]: {leads} leads, config {config_path or DEFAULT_CONFIG}")
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=namespace,
             logging_level=logging.ERROR, log_to_driver=False)
    try:
        report = deploy(build_spec(cfg), detached=False)
        out.print(f"deployed on a local Ray: {report.summary()}")
        routers = {cap: ray.get_actor(f"router:{cap}", namespace=namespace) for cap in cfg.capabilities}
        tally = Tally()
        half = leads // 2
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=out, transient=False) as progress:
            task = progress.add_task("campaign", total=leads)
            for start in range(0, leads, BATCH):
                if start <= half < start + BATCH:
                    _inject_faults(cfg, namespace, out)
                batch = range(start, min(start + BATCH, leads))
                per_cap: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = defaultdict(list)
                for i in batch:
                    for cap, request in _lead_requests(i).items():
                        if cap in routers:
                            per_cap[cap].append(request)
                if "social_posting" in routers:
                    per_cap["social_posting"].append(
                        ("publish_post", {"text": f"We welcomed {len(batch)} new customers today", "network": "linkedin"},
                         {"idempotency_key": f"announcement-{start}"}))
                refs = {cap: routers[cap].invoke_many.remote(reqs) for cap, reqs in per_cap.items()}
                for cap, ref in refs.items():
                    tally.add(cap, ray.get(ref))
                progress.update(task, advance=len(batch))
            # A retry storm from an impatient caller: the same welcome emails again.
            if "email_sending" in routers:
                again = [_lead_requests(i)["email_sending"] for i in range(0, min(leads, 20))]
                tally.add("email_sending", ray.get(routers["email_sending"].invoke_many.remote(again)))
            if "reply_fetching" in routers:
                tally.add("reply_fetching", [ray.get(routers["reply_fetching"].invoke.remote("fetch_replies", {"limit": 50}))])

        _print_tally(tally, out)
        supervisor = ray.get_actor("supervisor", namespace=namespace)
        out.print()
        render.status_table(ray.get(supervisor.status_report.remote()), out)
        out.print("\n[bold]self-check[/]")
        check = ray.get(supervisor.run_full_check.remote())
        render.self_check(check, out)
        duplicates = _ledger_duplicates(ledger)
        out.print(f"\nledger: {sum(1 for _ in ledger.open()) if ledger.exists() else 0} deliveries, "
                  f"{len(duplicates)} idempotency keys delivered more than once"
                  + (f": {duplicates[:5]}" if duplicates else ""))
        failed = sum(c["failed"] for c in tally.by_cap.values())
        out.print(f"\ndone in {time.monotonic() - started:.1f}s: "
                  + ("[green]every request served[/]" if not failed else f"[red]{failed} request(s) failed[/]"))
        teardown(namespace)
        return 0 if not failed and not duplicates else 1
    finally:
        ray.shutdown()


def _inject_faults(cfg: Any, namespace: str, out: Console) -> None:
    import ray

    def first(cap: str) -> str | None:
        c = cfg.capabilities.get(cap)
        return c.providers[0].name if c else None

    email, enrich = first("email_sending"), first("lead_enrichment")
    if email:
        handle = ray.get_actor(f"provider:email_sending:{email}", namespace=namespace)
        try:
            ray.get(handle.inject_fault.remote(failure_rate=1.0, error="transient"))
            out.print(f"[yellow]>>> midway: the primary email provider {email} goes down[/]")
        except Exception as exc:  # noqa: BLE001 - a real adapter takes no injected faults
            out.print(f"[dim]cannot break {email}: {exc}[/]")
    if enrich:
        handle = ray.get_actor(f"provider:lead_enrichment:{enrich}", namespace=namespace)
        try:
            ray.get(handle.inject_fault.remote(failure_rate=1.0, error="rate_limited", retry_after_s=30))
            out.print(f"[yellow]>>> midway: the enrichment API {enrich} starts answering 429 (retry after 30 s)[/]")
        except Exception as exc:  # noqa: BLE001
            out.print(f"[dim]cannot throttle {enrich}: {exc}[/]")


def _print_tally(tally: Tally, out: Console) -> None:
    table = Table(title="what happened", title_justify="left")
    for col in ("capability", "requests", "ok", "fallbacks", "replayed", "failed", "served by"):
        table.add_column(col)
    for cap, c in tally.by_cap.items():
        served = ", ".join(f"{k[4:]} {v}" for k, v in sorted(c.items()) if k.startswith("via "))
        table.add_row(cap, str(c["requests"]), str(c["ok"]), str(c["fallbacks"]), str(c["replayed"]),
                      f"[red]{c['failed']}[/]" if c["failed"] else "0", served)
    out.print(table)


def _ledger_duplicates(ledger: Path) -> list[str]:
    if not ledger.exists():
        return []
    keys = Counter()
    for line in ledger.open():
        entry = json.loads(line)
        if entry.get("idempotency_key"):
            keys[(entry["capability"], entry["idempotency_key"])] += 1
    return [f"{cap}/{key}" for (cap, key), n in keys.items() if n > 1]
