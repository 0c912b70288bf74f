"""`aicmo-gateway outbox list|replay|drop`: what the gateway queued or parked,
and what an operator can do about it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from actors.cli.connect import CliError, connect, supervisor
from actors.cli.options import finish, printed_json


def _age(at: float) -> str:
    seconds = max(0.0, time.time() - at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def cmd_list(args: argparse.Namespace) -> int:
    import ray
    from rich.table import Table

    from actors.cli.console import console

    sup = supervisor(connect(args.address, args.namespace))
    items = ray.get(sup.outbox_list.remote(args.capability, args.all), timeout=60)
    if printed_json(args, items):
        return 0
    out = console()
    if not items:
        out.print("the outbox is empty" + ("" if args.all else " (nothing queued or parked; --all shows delivered and dropped)"))
        return 0
    table = Table(title="outbox", title_justify="left")
    for col in ("id", "capability", "method", "state", "why", "age", "tries", "key", "what is known"):
        table.add_column(col)
    for item in items:
        known = item.error or ""
        if item.reason == "outcome_unknown" and item.state == "parked":
            known = f"may have been delivered by {item.provider}: {known}"
        table.add_row(str(item.id), item.capability, item.method, item.state, item.reason, _age(item.created_at),
                      str(item.attempts), item.idempotency_key, known[:90])
    out.print(table)
    parked = [i for i in items if i.state == "parked"]
    if parked:
        out.print(f"{len(parked)} parked: their outcome is unknown, so the gateway will not send them again on its own. "
                  "Check with the provider, then `aicmo-gateway outbox replay ID --force` (it was not delivered) "
                  "or `aicmo-gateway outbox drop ID` (it was).")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import ray

    from actors.cli.console import console

    sup = supervisor(connect(args.address, args.namespace))
    reports = ray.get(sup.outbox_replay.remote(args.ids or None, args.force), timeout=600)
    if not printed_json(args, reports):
        out = console()
        if not reports:
            out.print("nothing to replay" + (f": no queued or parked item among {args.ids}" if args.ids else ""))
        for r in reports:
            out.print(f"{r['capability']}: delivered {r['delivered'] or 'none'}"
                      + (f"; failed {[f['id'] for f in r['failed']]}" if r.get("failed") else ""))
            for failure in r.get("failed", []):
                out.print(f"  item {failure['id']}: {failure['error']}", highlight=False)
            unknown = r.get("settled", {}).get("unknown", [])
            if unknown and not args.force:
                out.print(f"  still unknown, not sent: {unknown} (add --force once you know they were not delivered)")
    failed = any(r.get("failed") for r in reports) or any(r.get("settled", {}).get("unknown") and not args.force for r in reports)
    return 1 if failed else 0


def cmd_drop(args: argparse.Namespace) -> int:
    import ray

    sup = supervisor(connect(args.address, args.namespace))
    items: list[Any] = ray.get(sup.outbox_list.remote(None, True), timeout=60)
    item = next((i for i in items if i.id == args.id), None)
    if item is None:
        raise CliError(2, f"no outbox item {args.id}")
    if item.state not in ("pending", "parked"):
        raise CliError(2, f"outbox item {args.id} is already {item.state}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(2, "dropping needs confirmation: add --yes (no terminal to ask on)")
        answer = input(f"drop outbox item {item.id} ({item.capability}.{item.method}, key {item.idempotency_key}, "
                       f"{item.state})? It will never be delivered. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not dropped")
            return 1
    dropped = ray.get(sup.outbox_drop.remote(item.id), timeout=60)
    print(f"dropped outbox item {dropped.id}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("outbox", help="requests queued for later delivery, or parked with an unknown outcome")
    osub = p.add_subparsers(dest="outbox_command", required=True, metavar="SUBCOMMAND")
    ls = osub.add_parser("list", help="queued and parked requests, oldest first")
    ls.add_argument("--capability", help="only this capability")
    ls.add_argument("--all", action="store_true", help="also delivered and dropped items")
    finish(ls, cmd_list, json=True)
    rp = osub.add_parser("replay", help="deliver queued items now (all, or the IDs given)")
    rp.add_argument("ids", nargs="*", type=int, metavar="ID")
    rp.add_argument("--force", action="store_true",
                    help="a parked item whose outcome is still unknown was NOT delivered (you checked): send it")
    finish(rp, cmd_replay, json=True)
    dp = osub.add_parser("drop", help="never deliver this item (asks for confirmation)")
    dp.add_argument("id", type=int, metavar="ID")
    dp.add_argument("--yes", action="store_true", help="do not ask")
    finish(dp, cmd_drop)
