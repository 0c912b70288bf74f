"""`aicmo-gateway`: deploy, inspect and drive the gateway on a Ray cluster.

Exit codes: 0 success; 1 the thing asked for failed (an invoke, a self-check
that finds a capability unserved); 2 the command could not run (no cluster,
no gateway, bad config, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from actors.cli import sandbox_env
from actors.cli.connect import CliError, connect, supervisor
from actors.cli.console import console
from actors.cli.options import finish, json_option, printed_json


def _load(path: str):
    from actors.config import load_config
    from actors.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        raise CliError(2, str(exc)) from None


def cmd_config_validate(args: argparse.Namespace) -> int:
    cfg = _load(args.path)
    providers = sum(len(c.providers) for c in cfg.capabilities.values())
    print(f"{args.path}: valid ({len(cfg.capabilities)} capabilities, {providers} providers, namespace {cfg.namespace!r})")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from actors.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from actors.names import router_name
    from actors.deploy.gateway import PlacementRefused, deploy
    from actors.specs import build_spec
    from actors.specs.http import build_http_spec

    sandbox_env.use_for(args.config)
    cfg = _load(args.config)
    connect(args.address, cfg.namespace)
    spec = build_spec(cfg, source=str(Path(args.config).resolve()))
    _refuse_a_split_store(spec)
    try:
        report = deploy(spec, detached=True, timeout_s=args.timeout)
    except PlacementRefused as exc:
        raise CliError(2, str(exc)) from None
    out = console()
    out.print(f"gateway {cfg.namespace!r} ready: {report.summary()}")
    for cap in cfg.capabilities:
        out.print(f"  {router_name(cap)}  ({', '.join(p.name for p in cfg.capabilities[cap].providers if p.enabled)})")
    _print_nodes(out, report)
    _print_exposures(spec, args.config, out)
    http = build_http_spec(cfg)
    if http is None:
        if _remove_http(cfg.namespace):
            out.print("HTTP API removed (http.enabled is off)")
        return 0
    from actors.http.deployment import HttpDeployError, deploy_http

    try:
        url = deploy_http(http, timeout_s=args.timeout, actor_options=_ingress_options(http))
    except HttpDeployError as exc:
        raise CliError(2, str(exc)) from None
    out.print(f"HTTP API ready at {url} (POST /v1/{{capability}}/{{method}}; docs at {url}/docs)")
    return 0


def _print_nodes(out: Any, report: Any) -> None:
    """Where each actor landed, and a warning for those on the head of a
    multi-node cluster: they die with the head, and so does what they serve."""
    from actors.deploy.placement import HeadAllowed

    out.print("placement:")
    for name, node in sorted(report.nodes.items()):
        where = "did not say" if node is None else f"{node.address or '?'} ({node.node_id[:12]}{', head' if node.is_head else ''})"
        out.print(f"  {name}  on {where}")
    on_head = report.on_head()
    if on_head:
        reasons = {str(p.reason) for n, p in report.placements.items() if n in on_head and isinstance(p, HeadAllowed)}
        why = f" ({'; '.join(sorted(reasons))})" if reasons else ""
        print(f"warning: {', '.join(on_head)} on the head node of a {report.cluster_nodes}-node cluster{why}: they "
              "stop with the head. Let them run on workers (placement.avoid_head: auto, and resources or labels a "
              "worker offers), then `aicmo-gateway up` again.", file=sys.stderr)


def _ingress_options(http: Any) -> dict[str, Any]:
    """The HTTP replicas' Ray options: the routers' placement, off the head as they are."""
    import ray

    from actors.deploy.placement import AvoidHead, NoPlace, decide, options_for, snapshot
    from actors.http.deployment import HttpDeployError, replica_options

    options = replica_options(http)
    placement = decide(snapshot(ray.nodes()), options, AvoidHead(http.avoid_head))
    if isinstance(placement, NoPlace):
        raise HttpDeployError(f"cannot place the HTTP ingress: {placement.reason}")
    return options_for(options, placement)


def _print_exposures(spec: Any, config_path: str, out: Any) -> None:
    """What this deployment exposes (chaos on, plain HTTP on the network, a
    store reached without verified TLS, API keys in the file), said where
    the operator looks."""
    from actors.ops.exposure import exposures, literal_api_keys_in

    for found in [*exposures(spec), *literal_api_keys_in(config_path)]:
        colour = "yellow" if found.severity == "warning" else "cyan"
        out.print(f"[{colour}]{found.severity}[/]: {found.problem} ({found.subject}); {found.fix}", highlight=False)


def _refuse_a_split_store(spec: Any) -> None:
    """Every node that may host a gateway actor must see the same state
    store, or the delivery guarantees hold on none of them."""
    import asyncio

    from actors.ops.shared_store import check_shared_store

    report = asyncio.run(check_shared_store(spec))
    if not report.shared:
        raise CliError(2, report.explain())


def _remove_http(namespace: str) -> bool:
    """Remove the gateway's HTTP API if it has one; Serve is not imported
    (nor started) for a cluster that never ran it."""
    import ray

    if not any(e["namespace"] == "serve" for e in ray.util.list_named_actors(all_namespaces=True)):
        return False
    from actors.http.deployment import remove_http

    return remove_http(namespace)


def cmd_down(args: argparse.Namespace) -> int:
    from actors.deploy.gateway import teardown

    connect(args.address, args.namespace)
    http = _remove_http(args.namespace)
    removed = teardown(args.namespace)
    print(f"removed {len(removed)} actor(s) from namespace {args.namespace!r}" if removed
          else f"nothing to remove in namespace {args.namespace!r}")
    if http:
        print("removed its HTTP API (Serve application)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from actors.cli import render

    gw = connect(args.address, args.namespace)
    supervisor(gw)  # not deployed: exit 2 with the reason
    if printed_json(args, gw.status()):
        return 0
    out = console()
    if not args.watch:
        render.status_table(gw.status(), out)
        return 0
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    def header() -> Text:
        return Text(f"aicmo-gateway status  namespace={args.namespace}  {time.strftime('%H:%M:%S')}  "
                    f"every {args.watch:g}s (Ctrl-C to stop)", style="bold")

    try:
        if not out.is_terminal:  # a pipe or a log: one frame after the other
            while True:
                out.print(header())
                render.status_table(gw.status(), out)
                sys.stdout.flush()
                time.sleep(args.watch)

        def frame() -> Any:
            report = gw.status()
            with out.capture() as captured:
                render.status_table(report, out)
            return Group(header(), Text.from_ansi(captured.get()))

        with Live(frame(), console=out, screen=True, auto_refresh=False) as live:
            while True:
                time.sleep(args.watch)
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        return 0


def cmd_self_check(args: argparse.Namespace) -> int:
    import msgspec
    import ray

    from actors.cli import render

    sup = supervisor(connect(args.address, args.namespace))
    report = ray.get(sup.run_full_check.remote(), timeout=180)
    try:
        reach = msgspec.to_builtins(ray.get(sup.reachability.remote(), timeout=30))
    except Exception:  # noqa: BLE001 - a supervisor from before the matrix existed
        reach = None
    if not printed_json(args, {**msgspec.to_builtins(report), "reachability": reach}):
        render.self_check(report, console(), reach=reach)
    return 0 if report.ok else 1


def _payload(text: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise CliError(2, f"--payload {text}: cannot read the file: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(2, f"--payload is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None


def cmd_invoke(args: argparse.Namespace) -> int:
    from actors.cli import render
    from actors.errors import NotDeployed
    from actors.payloads import CAPABILITIES

    if args.capability not in CAPABILITIES:
        raise CliError(2, f"unknown capability {args.capability!r}; known: {', '.join(CAPABILITIES)}")
    payload = _payload(args.payload)
    gw = connect(args.address, args.namespace)
    try:
        result = gw.invoke(args.capability, args.method, payload, idempotency_key=args.idempotency_key,
                           dry_run=True if args.dry_run else None, deadline_s=args.deadline)
    except NotDeployed as exc:
        raise CliError(2, str(exc)) from None
    if not printed_json(args, result):
        render.invoke_result(result, console())
    return 0 if result.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from actors import sandbox

    if sandbox.missing():
        raise CliError(2, sandbox.install_hint("`aicmo-gateway demo`"))
    from actors.cli.demo import run_demo

    return run_demo(leads=args.leads, config_path=args.config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aicmo-gateway", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="run the main job on a local Ray with stand-in providers and injected faults")
    p.add_argument("--leads", type=int, default=200, help="how many leads the campaign processes (default 200)")
    p.add_argument("--config", help="gateway config to run the demo on (default: the embedded config/default.yaml)")
    p.set_defaults(func=cmd_demo)

    from actors.cli import sandbox_cmd

    sandbox_cmd.register(sub)

    p = sub.add_parser("up", help="deploy or update the gateway's detached actors and wait until ready")
    p.add_argument("--config", required=True, help="gateway config file (YAML)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the actors to be ready")
    finish(p, cmd_up, namespace=False)

    finish(sub.add_parser("down", help="remove the gateway's actors"), cmd_down)

    p = sub.add_parser("status", help="health of every capability and provider")
    json_option(p)
    p.add_argument("--watch", type=float, nargs="?", const=2.0, default=None, metavar="SECONDS",
                   help="refresh every SECONDS (default 2)")
    finish(p, cmd_status)

    finish(sub.add_parser("self-check", help="probe every provider; print problems and fixes (exit 1 if a capability is "
                                            "unserved)"), cmd_self_check, json=True)

    p = sub.add_parser("invoke", help="one call through a capability's router")
    p.add_argument("capability")
    p.add_argument("method")
    p.add_argument("--payload", required=True, help="JSON object, @file.json, or - for stdin")
    p.add_argument("--dry-run", action="store_true", help="reach the adapter but send nothing")
    p.add_argument("--idempotency-key", help="a repeat within the window returns the first result")
    p.add_argument("--deadline", type=float, help="overall deadline in seconds")
    finish(p, cmd_invoke, json=True)

    p = sub.add_parser("config", help="validate a config file, or print its JSON Schema")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    v = csub.add_parser("validate", help="validate a config file (exit 2 with field paths if invalid)")
    v.add_argument("path")
    v.set_defaults(func=cmd_config_validate)
    s = csub.add_parser("schema", help="print the config's JSON Schema (for editor completion)")
    s.set_defaults(func=cmd_config_schema)

    # Commands that live in modules of their own.
    from actors.cli import chaos_cmd, delivery_cmd, ops_cmd, outbox_cmd

    outbox_cmd.register(sub)
    delivery_cmd.register(sub)
    ops_cmd.register(sub)
    chaos_cmd.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"aicmo-gateway: {exc.message}", file=sys.stderr)
        return exc.code
    except Exception as exc:  # Ray's own failures (timeouts, dead actors) end the command, readably
        if type(exc).__module__.startswith("ray"):
            print(f"aicmo-gateway: the cluster did not answer: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                  file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
