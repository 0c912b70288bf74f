"""`aicmo-gateway audit tail|hash` and `aicmo-gateway doctor`: reading the
audit log, and checking the local setup before anything is deployed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from actors.cli.connect import CliError, connect, router, supervisor, use_token_auth_if_available
from actors.cli.options import finish, json_option

# --- audit tail --------------------------------------------------------------------


def _routers(gw: Any, args: argparse.Namespace) -> dict[str, Any]:
    if args.capability:
        return {args.capability: router(gw, args.capability)}
    supervisor(gw)  # not deployed: say so
    return {cap: router(gw, cap) for cap in gw.capabilities()}


def cmd_audit_hash(args: argparse.Namespace) -> int:
    """The audit log never holds a key or an address, only their HMACs under
    the deployment's secret: this says what to look for."""
    import ray

    if args.key is None and args.email is None:
        raise CliError(2, "audit hash needs --key or --email (or both)")
    gw = connect(args.address, args.namespace)
    hashes = ray.get(supervisor(gw).audit_hashes.remote(args.key, args.email), timeout=60)
    if args.json:
        print(json.dumps(hashes))
    else:
        for name, value in hashes.items():
            if value is not None:
                print(f"{name}: {value}")
    return 0


def cmd_audit_tail(args: argparse.Namespace) -> int:
    import ray

    from actors.cli import render
    from actors.cli.console import console

    routers = _routers(connect(args.address, args.namespace), args)
    out = console()

    def show(records: list[dict[str, Any]]) -> None:
        for rec in sorted(records, key=lambda r: r.get("at", 0)):
            if args.json:
                print(json.dumps(rec, separators=(",", ":")), flush=True)
            else:
                out.print(render.audit_line(rec), highlight=False, markup=False, soft_wrap=True)

    answers = dict(zip(routers, ray.get([r.audit_tail.remote(args.lines) for r in routers.values()], timeout=60), strict=True))
    records = [rec for a in answers.values() for rec in a["records"]]
    show(sorted(records, key=lambda r: r.get("at", 0))[-args.lines:])
    if not records and not args.follow and not args.json:
        where = ", ".join(a["path"] for a in answers.values() if a.get("path")) or "audit is turned off (audit.enabled)"
        out.print(f"no audit records yet ({where})")
    if not args.follow:
        return 0
    cursors = {cap: a["cursor"] for cap, a in answers.items()}
    # On stderr (stdout stays records only, --json too): from here on every new decision is printed,
    # which a user (or a script) sending traffic next can wait for.
    print(f"following {', '.join(routers)} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(args.interval)
            caps = list(routers)
            refs = [routers[c].audit_since.remote(cursors[c]) for c in caps]
            batch: list[dict[str, Any]] = []
            for cap, answer in zip(caps, ray.get(refs, timeout=60), strict=True):
                cursors[cap] = answer["cursor"]
                batch += answer["records"]
            show(batch)
    except KeyboardInterrupt:
        return 0


# --- doctor ------------------------------------------------------------------------
MARK = {"ok": "[green]ok[/]     ", "problem": "[bold red]PROBLEM[/]", "warning": "[yellow]warning[/]", "info": "[cyan]info[/]   "}


def cmd_doctor(args: argparse.Namespace) -> int:
    import msgspec

    from actors.ops.doctor import (
        check_config,
        check_hooks,
        check_local_redis,
        check_providers,
        check_ray,
        check_state_dir,
        check_store_and_head,
    )

    from actors.cli import sandbox_env

    sandbox_env.use_for(args.config)
    try:
        findings, cfg = check_config(args.config)
    except OSError as exc:
        raise CliError(2, f"cannot read {args.config}: {exc.strerror or exc}") from None
    spec = None
    if cfg is not None:
        from actors.specs import build_spec

        spec = build_spec(cfg, source=str(Path(args.config).resolve()))
    findings += check_local_redis()  # RAY_REDIS_ADDRESS here (the head's machine): the Redis its GCS uses
    if args.no_ray:
        findings.append(_skipped("ray", "--no-ray"))
    else:
        use_token_auth_if_available()
        namespace = cfg.namespace if cfg is not None else args.namespace
        findings += check_ray(args.address, namespace, spec.digest if spec is not None else None,
                              while_connected=(lambda: check_store_and_head(spec)) if spec is not None else None)
    if spec is not None:
        findings += check_providers(spec, args.timeout)
        findings += check_hooks(cfg)
        findings += check_state_dir(spec.state.url)
        findings += _exposure_findings(spec, args.config)
    problems = sum(1 for f in findings if f.status == "problem")
    if args.json:
        print(json.dumps({"ok": problems == 0, "problems": problems, "findings": msgspec.to_builtins(findings)}))
    else:
        from actors.cli.console import console

        out = console()
        for f in findings:
            out.print(f"{MARK.get(f.status, f.status)} {f.check:<9} {f.subject}: {f.detail}", highlight=False)
            if f.fix and f.status != "ok":
                out.print(f"{'':17}fix: {f.fix}", highlight=False)
        out.print()
        out.print("[green]no problems found[/]" if not problems else f"[bold red]{problems} problem(s) found[/]")
    return 0 if problems == 0 else 1


def _skipped(check: str, why: str) -> Any:
    from actors.ops.doctor import Finding

    return Finding(check=check, status="info", subject="skipped", detail=why)


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="the durable audit log of routing decisions")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    h = asub.add_parser("hash", help="what the audit log writes for an idempotency key or an email address")
    h.add_argument("--key", help="an idempotency key")
    h.add_argument("--email", help="an email address")
    finish(h, cmd_audit_hash, json=True)
    t = asub.add_parser("tail", help="the latest routing decisions, oldest first (--follow for new ones)")
    t.add_argument("--capability", help="only this capability's router")
    t.add_argument("-n", "--lines", type=int, default=20, help="how many records to show first (default 20)")
    t.add_argument("--follow", "-f", action="store_true", help="keep printing new records (Ctrl-C to stop)")
    t.add_argument("--interval", type=float, default=1.0, help="seconds between polls with --follow (default 1)")
    json_option(t, help="one JSON record per line, as stored")
    finish(t, cmd_audit_tail)

    d = sub.add_parser("doctor", help="check the local setup before deploying: config, environment, Ray, providers")
    d.add_argument("--config", required=True, help="gateway config file (YAML)")
    d.add_argument("--no-ray", action="store_true", help="skip the cluster checks")
    d.add_argument("--timeout", type=float, default=10.0, help="seconds each provider's health check may take")
    finish(d, cmd_doctor, json=True)


def _exposure_findings(spec: Any, config_path: str) -> list[Any]:
    """The state store's, the HTTP API's and chaos's exposure, and API keys
    written in the file (issue 21)."""
    from actors.ops.exposure import as_findings, exposures, literal_api_keys_in

    return as_findings([*exposures(spec), *literal_api_keys_in(config_path)])
