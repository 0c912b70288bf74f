"""What the CLI's commands share: the cluster options, `--json`, and
printing one JSON document, in one place for main.py and the command
modules (chaos_cmd.py, outbox_cmd.py, ops_cmd.py, sandbox_cmd.py).

    p = sub.add_parser("list", help="...")
    p.add_argument("--all", action="store_true")     # the command's own arguments first
    finish(p, cmd_list, json=True)                   # then --json, --address, --namespace; and what runs it

    def cmd_list(args):
        ...
        if printed_json(args, items):
            return 0
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from actors.cli.connect import default_namespace

__all__ = ["cluster_options", "finish", "json_option", "printed_json"]

JSON_HELP = "one JSON document on stdout"


def json_option(p: argparse.ArgumentParser, help: str = JSON_HELP) -> None:
    p.add_argument("--json", action="store_true", help=help)


def cluster_options(p: argparse.ArgumentParser, namespace: bool = True) -> None:
    """--address (and --namespace, which every command but `up` and `demo` takes)."""
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else the running local cluster)")
    if namespace:
        p.add_argument("--namespace", default=default_namespace(),
                       help="gateway namespace (default: $AICMO_NAMESPACE, else aicmo)")


def finish(p: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int], *, json: bool = False,
           namespace: bool = True) -> argparse.ArgumentParser:
    """After a command's own arguments: --json (when it prints JSON), the
    cluster options, and the function that runs it."""
    if json:
        json_option(p)
    cluster_options(p, namespace=namespace)
    p.set_defaults(func=func)
    return p


def printed_json(args: argparse.Namespace, obj: Any) -> bool:
    """With --json, print `obj` as one JSON document and say so."""
    if not args.json:
        return False
    from actors.cli.render import as_json

    print(as_json(obj))
    return True
