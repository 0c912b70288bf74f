"""`aicmo-gateway trace ID` and `aicmo-gateway suppression list|remove`: a
request's timeline (attempts, skips, delivery events), and the addresses
refused after a hard bounce."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from actors.cli.connect import CliError, connect, supervisor
from actors.cli.options import finish, printed_json


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if at else "?"


def cmd_trace(args: argparse.Namespace) -> int:
    import ray

    from actors.cli.console import console

    trace = ray.get(supervisor(connect(args.address, args.namespace)).delivery_trace.remote(args.id), timeout=60)
    if trace is None:
        raise CliError(1, f"no request or idempotency key {args.id!r} is known (a request sent without a key "
                          "is known by its request id once a delivery event names it)")
    if printed_json(args, trace):
        return 0
    out = console()
    out.print(f"{trace.capability}: request {trace.request_id or '?'}"
              + (f", key {trace.idempotency_key}" if trace.idempotency_key else ""), highlight=False)
    for skip in trace.skips:
        out.print(f"  skipped {skip.provider}: {skip.detail or skip.reason}", highlight=False)
    for attempt in trace.attempts:
        outcome = "ok" if attempt.ok else f"failed ({attempt.error_kind.value if attempt.error_kind else '?'}: " \
                                            f"{(attempt.error or '')[:80]})"
        out.print(f"  attempt {attempt.provider}: {outcome}", highlight=False)
    if trace.ok is not None:
        out.print(f"  served by {trace.provider}" if trace.ok else "  not served", highlight=False)
    for e in trace.events:
        detail = ", ".join(x for x in (e.bounce and f"{e.bounce} bounce", e.cause and f"cause {e.cause}",
                                       e.reason) if x)
        out.print(f"  {_when(e.occurred_at)}  {e.provider}: {e.kind} -> {e.state or '(no delivery state)'}"
                  f"  {e.recipient or ''}" + (f"  ({detail})" if detail else ""), highlight=False)
    out.print(f"delivery: {trace.delivery_state or 'no delivery event yet'}", highlight=False)
    return 0


def cmd_suppression_list(args: argparse.Namespace) -> int:
    import ray

    from actors.cli.console import console

    rows: list[Any] = ray.get(supervisor(connect(args.address, args.namespace)).suppression_list.remote(
        args.capability), timeout=60)
    if printed_json(args, rows):
        return 0
    out = console()
    if not rows:
        out.print("no address is suppressed")
    for r in rows:
        out.print(f"{r.address}  {r.capability}  since {_when(r.added_at)}  {r.reason}"
                  + (f" (from {r.provider}, request {r.request_id})" if r.provider else ""), highlight=False)
    return 0


def cmd_suppression_remove(args: argparse.Namespace) -> int:
    import ray

    from actors.cli.console import console

    n = ray.get(supervisor(connect(args.address, args.namespace)).suppression_remove.remote(
        args.address_to_remove, args.capability), timeout=60)
    if n == 0:
        raise CliError(1, f"{args.address_to_remove} is not on the suppression list")
    console().print(f"{args.address_to_remove} removed: sends to it are allowed again", highlight=False)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("trace", help="a request's timeline: attempts, skips and delivery events (exit 1 if unknown)")
    p.add_argument("id", help="a request id or an idempotency key")
    finish(p, cmd_trace, json=True)

    p = sub.add_parser("suppression", help="addresses refused after a hard bounce (kind `suppressed`)")
    ssub = p.add_subparsers(dest="suppression_command", required=True, metavar="SUBCOMMAND")
    s = ssub.add_parser("list", help="the suppressed addresses")
    s.add_argument("--capability", help="only this capability's")
    finish(s, cmd_suppression_list, json=True)
    r = ssub.add_parser("remove", help="allow sends to an address again")
    r.add_argument("address_to_remove", metavar="ADDRESS")
    r.add_argument("--capability", help="only this capability's entry")
    finish(r, cmd_suppression_remove)
