"""`aicmo-gateway demo`: the main job on a laptop, with no credentials.

Local stand-ins for every provider (actors/sandbox/stack.py: HTTP servers
that speak each provider's API, a real SMTP server with STARTTLS and AUTH,
Dovecot for IMAP when it is installed), a local Ray, the gateway deployed
from config/default.yaml with its real adapters pointed at the stand-ins,
and a campaign: for each lead verify the address, enrich it, upsert it into
the CRM, send the welcome email and dispatch a webhook; an announcement post
per batch; then the replies are fetched. Midway the primary SMTP server goes
down and the enrichment API starts answering 429. Three quarters in,
SendGrid (serving since SMTP went down) starts silently dropping what it
accepts: a 202 as ever, and a signed `dropped` event (demo_delivery.py);
the gateway reads the events, degrades then ejects it, and re-sends each
dropped message once through another provider with the same Message-ID.
At the end: what happened per capability, provider health, the
self-check, what the delivery events showed, and the stand-ins' own record
of what they received, which shows no welcome email went out twice and
none was lost.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from collections import Counter, defaultdict
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "default.yaml"
BATCH = 50
# From the moment SendGrid starts dropping, welcome emails go out at this pace (the rate of the issue's
# figure), so that its first drops come back as events while the rest are still being sent.
PACE_PER_S = 10.0
PACE_CHUNK = 5
FIRST = ["Ann", "Bob", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Karim", "Lea"]
LAST = ["Lee", "Martin", "Durand", "Bernard", "Petit", "Moreau", "Garcia", "Nguyen", "Roux", "Fournier"]
COMPANIES = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell", "cyberdyne", "soylent"]


def make_leads(n: int, seed: int = 7) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The campaign's leads, and the people the enrichment stand-ins know (most of them)."""
    rng = random.Random(seed)
    leads, known = [], []
    for i in range(n):
        first, last, company = rng.choice(FIRST), rng.choice(LAST), rng.choice(COMPANIES)
        local = f"{first}.{last}{i}".lower()
        if i % 17 == 5:
            local = f"bounce{i}"          # the verifiers call these invalid
        elif i % 23 == 9:
            local = f"catchall{i}"        # ... and these risky
        lead = {"i": i, "first_name": first, "last_name": last, "company": company.title(),
                "email": f"{local}@{company}.example", "domain": f"{company}.example"}
        leads.append(lead)
        if rng.random() < 0.85:
            known.append({"first_name": first, "last_name": last, "email": lead["email"], "domain": lead["domain"],
                          "title": rng.choice(["CMO", "Head of Growth", "VP Sales", "Founder", "Marketing Lead"]),
                          "company": lead["company"], "linkedin": f"www.linkedin.com/in/{local}",
                          "city": rng.choice(["Paris", "Lyon", "Berlin", "London"]), "country": "Europe"})
    return leads, known


class Tally:
    def __init__(self) -> None:
        self.by_cap: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, cap: str, results: list[Any]) -> list[Any]:
        c = self.by_cap[cap]
        for r in results:
            c["requests"] += 1
            if r.ok and r.outbox_id is not None and not r.value.get("delivered", True):
                c["queued"] += 1
            elif r.ok:
                c["ok"] += 1
                c[f"via {r.provider}"] += 1
            else:
                c["failed"] += 1
                c[f"error {r.error.kind}"] += 1
            if r.replayed:
                c["replayed"] += 1
            elif len([a for a in r.attempts if a.error_kind not in ("not_supported", "cancelled") and not a.hedge]) > 1:
                c["fallbacks"] += 1
        return results


def run_demo(leads: int = 200, config_path: str | None = None) -> int:
    import ray

    from actors.cli import demo_delivery, render
    from actors.client import Gateway
    from actors.config import StateConfig
    from actors.deploy.gateway import deploy, teardown
    from actors.deploy.local_ray import init_local
    from actors.specs import build_spec
    from actors.sandbox.stack import SandboxStack

    started = time.monotonic()
    out = Console(highlight=False, width=None if os.isatty(1) else 110)
    workdir = Path(tempfile.mkdtemp(prefix="aicmo-demo-"))
    workdir.chmod(0o755)  # the sandbox's Dovecot, under it, runs its mail processes as another user
    people, known = make_leads(leads)
    out.print(f"[bold]aicmo-gateway demo[/]: {leads} leads through every capability, on local stand-ins")
    stack = SandboxStack(people=known, root=workdir / "sandbox").start()
    out.print(f"stand-ins up: {len(stack.http)} HTTP APIs, SMTP on :{stack.smtp.port} (STARTTLS, AUTH), "
              + (f"Dovecot IMAP on :{stack.imap.port}" if stack.imap else f"[yellow]no IMAP[/] ({stack.imap_unavailable})"))
    cfg = demo_delivery.load_demo_config(config_path or DEFAULT_CONFIG, env={**os.environ, **stack.env()})
    namespace = f"{cfg.namespace}-demo"
    cfg = cfg.model_copy(update={"namespace": namespace, "state": StateConfig(url=str(workdir / "state"))})
    spec = build_spec(cfg, source=str(config_path or DEFAULT_CONFIG))
    init_local(ray, actors=spec.actor_count, num_cpus=2, include_dashboard=False, namespace=namespace,
               logging_level=logging.ERROR, log_to_driver=False)
    events = None
    try:
        report = deploy(spec, detached=False)
        out.print(f"gateway deployed on a local Ray: {report.summary()}")
        gw = Gateway(namespace)
        events = demo_delivery.EventsServer(cfg, spec, gw).start()
        for name in ("sendgrid", "mailgun"):
            stack.http[name].events.settings.update({"url": events.url(name)})
        out.print(f"delivery events: the SendGrid and Mailgun stand-ins post theirs, signed, to "
                  f"{events.url('{provider}')}")
        tally = Tally()
        sent_ids: dict[int, str] = {}   # lead -> Message-ID of its welcome email (delivered now)
        welcomed: set[int] = set()      # leads whose welcome email was accepted (delivered, or queued)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=out, transient=False) as progress:
            task = progress.add_task("campaign", total=leads)
            welcomes = Welcomes(gw, tally, stack, drop_at=leads * 3 // 4, out=progress.console)
            for start in range(0, leads, BATCH):
                if start <= leads // 2 < start + BATCH:
                    _inject_faults(stack, progress.console)
                batch = people[start:start + BATCH]
                sent_ids.update(_run_batch(gw, tally, batch, start, welcomed, welcomes))
                progress.update(task, advance=len(batch))
            # An impatient caller sends the first welcome emails again: the keys make them no-ops.
            again = [("send_email", _welcome(p), {"idempotency_key": f"lead-{p['i']}-welcome"})
                     for p in people if p["i"] in welcomed][:20]
            tally.add("email_sending", gw.invoke_many("email_sending", again))
            replies = _replies(gw, tally, stack, people, sent_ids)

        _print_tally(tally, out)
        out.print(f"replies fetched: {len(replies)}, threaded to a welcome email by In-Reply-To: "
                  f"{sum(1 for r in replies if r.get('in_reply_to') in set(sent_ids.values()))}")
        supervisor = gw.supervisor()
        _wait_for_outbox(ray, supervisor, out)
        out.print()
        render.status_table(gw.status(), out)
        out.print("\n[bold]self-check[/]")
        check = ray.get(supervisor.run_full_check.remote())
        render.self_check(check, out)
        received = demo_delivery.wait_for_resends(stack)
        demo_delivery.report(out, received, demo_delivery.transitions(ray, gw.router("email_sending")),
                             welcomes.dropping_since, welcomes.routed_around)
        out.print(f"\nthe email stand-ins received {received.delivered} welcome emails for {len(welcomed)} welcomed "
                  f"leads; {len(received.duplicates)} delivered more than once"
                  + (f": {received.duplicates[:5]}" if received.duplicates else "")
                  + f"; {len(received.resent)} re-sent after a drop; {len(received.lost)} lost")
        failed = sum(c["failed"] for c in tally.by_cap.values())
        out.print(f"\ndone in {time.monotonic() - started:.0f}s: "
                  + ("[green]every request served[/]" if not failed else f"[red]{failed} request(s) failed[/]"))
        teardown(namespace)
        return 0 if (not failed and not received.duplicates and not received.lost
                     and received.delivered == len(welcomed)) else 1
    finally:
        if events is not None:
            events.stop()
        ray.shutdown()
        stack.stop()


def _welcome(p: dict[str, Any]) -> dict[str, Any]:
    return {"to": [p["email"]], "subject": f"Welcome, {p['first_name']}",
            "text": f"Hello {p['first_name']},\n\nthanks for your interest in our product.\n",
            "html": f"<p>Hello {p['first_name']},</p><p>thanks for your interest in our product.</p>"}


class Welcomes:
    """Sends the welcome emails. At lead `drop_at` SendGrid starts silently
    dropping (demo_delivery.start_dropping); from then on they go out
    PACE_CHUNK at a time at PACE_PER_S, and those another provider serves
    are counted (routed around)."""

    def __init__(self, gw: Any, tally: Tally, stack: Any, drop_at: int, out: Console):
        self.gw, self.tally, self.stack, self.drop_at, self.out = gw, tally, stack, drop_at, out
        self.dropping_since: float | None = None     # wall time, as the audit log's records
        self.routed_around = 0

    def send(self, leads: list[dict[str, Any]]) -> list[Any]:
        def many(ps: list[dict[str, Any]]) -> list[Any]:
            return self.tally.add("email_sending", self.gw.invoke_many("email_sending", [
                ("send_email", _welcome(p), {"idempotency_key": f"lead-{p['i']}-welcome"}) for p in ps])) if ps else []

        results = many([p for p in leads if p["i"] < self.drop_at])
        later = [p for p in leads if p["i"] >= self.drop_at]
        if later and self.dropping_since is None:
            from actors.cli.demo_delivery import start_dropping

            start_dropping(self.stack)
            self.dropping_since = time.time()
            self.out.print("[yellow]>>> three quarters in: SendGrid starts silently dropping every message it "
                           f"accepts (202 as ever); welcome emails now go out at {PACE_PER_S:.0f}/s[/]")
        for n in range(0, len(later), PACE_CHUNK):
            begun = time.monotonic()
            chunk = many(later[n:n + PACE_CHUNK])
            self.routed_around += sum(1 for r in chunk if r.ok and r.provider not in (None, "sendgrid"))
            results += chunk
            time.sleep(max(0.0, PACE_CHUNK / PACE_PER_S - (time.monotonic() - begun)))
        return results


def _run_batch(gw: Any, tally: Tally, batch: list[dict[str, Any]], start: int, welcomed: set[int],
               welcomes: Welcomes) -> dict[int, str]:
    """One batch, stage by stage as a campaign tool would: only verified
    addresses are enriched, stored and mailed."""
    def many(cap: str, requests: list[Any]) -> list[Any]:
        return tally.add(cap, gw.invoke_many(cap, requests)) if requests else []

    verdicts = many("email_verification", [("verify_email", {"email": p["email"]}, {}) for p in batch])
    keep = [p for p, v in zip(batch, verdicts, strict=True) if v.ok and v.value.get("status") in ("valid", "risky")]
    enriched = many("lead_enrichment", [("enrich_person", {"email": p["email"]}, {}) for p in keep])
    upserts = []
    for p, e in zip(keep, enriched, strict=True):
        person = (e.value or {}).get("person") or {} if e.ok else {}
        fields = {k: person[k] for k in ("title", "linkedin_url") if person.get(k)}
        upserts.append(("upsert_contact", {"email": p["email"], "first_name": p["first_name"], "last_name": p["last_name"],
                                           "company": p["company"], "fields": fields}, {}))
    many("crm_sync", upserts)
    sends = welcomes.send(keep)
    many("webhook_dispatch", [("dispatch", {"event": "lead.welcomed", "data": {"lead": p["i"], "ok": s.ok}},
                               {"idempotency_key": f"lead-{p['i']}-welcomed"}) for p, s in zip(keep, sends, strict=True)])
    welcomed.update(p["i"] for p, s in zip(keep, sends, strict=True) if s.ok)
    many("social_posting", [("publish_post", {"text": f"{len(keep)} new teams joined us this hour (batch {start // BATCH + 1})",
                                              "network": "linkedin"}, {"idempotency_key": f"announcement-{start}"})])
    return {p["i"]: s.value["message_id"] for p, s in zip(keep, sends, strict=True)
            if s.ok and isinstance(s.value, dict) and s.value.get("message_id")}


def _inject_faults(stack: Any, out: Console) -> None:
    stack.smtp.set_faults(down=True)
    out.print("[yellow]>>> midway: the primary SMTP server goes down (421 to every connection)[/]")
    stack.http["apollo"].faults.update({"throttle_for_s": 30, "retry_after_s": 30})
    out.print("[yellow]>>> midway: the Apollo enrichment API starts answering 429 (retry after 30 s)[/]")


def _replies(gw: Any, tally: Tally, stack: Any, people: list[dict[str, Any]],
             sent_ids: dict[int, str]) -> list[dict[str, Any]]:
    """A tenth of the mailed leads answer; the gateway fetches the replies."""
    by_i = {p["i"]: p for p in people}
    for n, (i, message_id) in enumerate(sorted(sent_ids.items())):
        if n % 10:
            continue
        p = by_i[i]
        msg = EmailMessage()
        msg["From"] = f"{p['first_name']} {p['last_name']} <{p['email']}>"
        msg["To"] = "bot@example.com"
        msg["Subject"] = f"Re: Welcome, {p['first_name']}"
        msg["Message-ID"] = f"<reply-{i}@{p['domain']}>"
        msg["In-Reply-To"] = message_id
        msg["Date"] = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
        msg.set_content("Thanks! Can we talk next week?\n")
        stack.deliver_reply(bytes(msg))
    [result] = tally.add("reply_fetching", [gw.invoke("reply_fetching", "fetch_replies", {"limit": 200})])
    return result.value["replies"] if result.ok else []


def _wait_for_outbox(ray: Any, supervisor: Any, out: Console, timeout_s: float = 20.0) -> None:
    """Requests queued while every provider was down are delivered once one is back."""
    deadline = time.monotonic() + timeout_s
    items = ray.get(supervisor.outbox_list.remote())
    if items:
        out.print(f"outbox: {len(items)} request(s) queued; waiting for the supervisor to deliver them")
    while items and time.monotonic() < deadline:
        time.sleep(0.5)
        items = ray.get(supervisor.outbox_list.remote())
    if items:
        out.print(f"[yellow]outbox: {len(items)} still queued (see `aicmo-gateway outbox list`)[/]")


def _print_tally(tally: Tally, out: Console) -> None:
    table = Table(title="what happened", title_justify="left")
    for col in ("capability", "requests", "ok", "fallbacks", "queued", "replayed", "failed", "served by"):
        table.add_column(col)
    for cap, c in tally.by_cap.items():
        served = ", ".join(f"{k[4:]} {v}" for k, v in sorted(c.items()) if k.startswith("via "))
        errors = ", ".join(f"{k[6:]} {v}" for k, v in sorted(c.items()) if k.startswith("error "))
        table.add_row(cap, str(c["requests"]), str(c["ok"]), str(c["fallbacks"]), str(c["queued"]), str(c["replayed"]),
                      f"[red]{c['failed']}[/] ({errors})" if c["failed"] else "0", served)
    out.print(table)
