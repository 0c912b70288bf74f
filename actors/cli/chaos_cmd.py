"""`aicmo-gateway chaos inject|list|clear`: live faults on a running
gateway, for game days (policy: actors/policy/chaos/faults.py; where they live:
actors/provider/faults.py and chaos_control.py).

    aicmo-gateway chaos inject email_sending resend --fail 0.3 --for 600
    aicmo-gateway chaos inject email_sending resend --latency-ms 800 --error timeout --for 60
    aicmo-gateway chaos list
    aicmo-gateway chaos clear [CAPABILITY [PROVIDER]]

A fault is checked here first (every problem at once, exit 2), then again
by the supervisor against the deployed config (`chaos.allowed`).
"""

from __future__ import annotations

import argparse
import getpass
import socket
import time
import uuid
from typing import Any

from actors.cli.connect import CliError, connect, supervisor
from actors.cli.options import finish, printed_json
from actors.cli.render import fault_text as describe
from actors.errors import InvalidFault
from actors.policy.chaos.faults import Fault, FaultProblem, new_fault

__all__ = ["register", "who"]


def who() -> str:
    """Who sets or clears a fault, for the audit log: user@host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _problems(exc: InvalidFault, for_missing: bool, max_duration_s: float) -> str:
    lines = []
    for problem, message in exc.problems:
        if problem is FaultProblem.DURATION_OUT_OF_RANGE and for_missing:
            message = f"--for SECONDS is required: how long the fault lasts (at most {max_duration_s:.0f} s)"
        lines.append(f"  {problem}: {message}")
    return "cannot inject this fault:\n" + "\n".join(lines)


def _spec(sup: Any) -> Any:
    import ray

    return ray.get(sup.spec.remote(), timeout=60)


def _invalid(exc: BaseException) -> InvalidFault | None:
    """The InvalidFault a call to the supervisor raised (Ray wraps it)."""
    for candidate in (exc, getattr(exc, "cause", None)):
        if isinstance(candidate, InvalidFault):
            return candidate
    return None


def cmd_inject(args: argparse.Namespace) -> int:
    import ray

    from actors.supervisor.chaos_control import known_providers

    sup = supervisor(connect(args.address, args.namespace))
    spec = _spec(sup)
    try:
        fault = new_fault(args.capability, args.provider, duration_s=float("nan") if args.for_s is None else args.for_s,
                          now=time.time(), by=who(), fault_id=uuid.uuid4().hex[:12], fail_rate=args.fail,
                          latency_ms=args.latency_ms, error=args.error, policy=spec.chaos, known=known_providers(spec))
    except InvalidFault as exc:
        raise CliError(2, _problems(exc, args.for_s is None, spec.chaos.max_duration_s)) from None
    try:
        event = ray.get(sup.chaos_inject.remote(fault), timeout=60)
    except Exception as exc:  # noqa: BLE001 - the supervisor's own check (a config changed since)
        invalid = _invalid(exc)
        if invalid is None:
            raise
        raise CliError(2, _problems(invalid, False, spec.chaos.max_duration_s)) from None
    if printed_json(args, event):
        return 0
    print(f"fault {fault.id} on {fault.key}: {describe(fault)}")
    if event.replaced is not None:
        print(f"  it replaced fault {event.replaced.id} ({describe(event.replaced)})")
    print(f"  ends by itself; to end it now: aicmo-gateway chaos clear {fault.capability} {fault.provider}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    import ray

    sup = supervisor(connect(args.address, args.namespace))
    faults: list[Fault] = ray.get(sup.chaos_list.remote(), timeout=60)
    if printed_json(args, faults):
        return 0
    if not faults:
        print("no active fault")
    for f in faults:
        print(f"{f.key}  {f.id}  {describe(f)}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    import ray

    from actors.supervisor.chaos_control import known_providers

    sup = supervisor(connect(args.address, args.namespace))
    if args.capability is not None:
        known = known_providers(_spec(sup))
        if args.capability not in known:
            raise CliError(2, f"no capability {args.capability!r}; this gateway has: {', '.join(known)}")
        if args.provider is not None and args.provider not in known[args.capability]:
            raise CliError(2, f"no provider {args.provider!r} under capability {args.capability!r}; "
                              f"it has: {', '.join(known[args.capability])}")
    cleared = ray.get(sup.chaos_clear.remote(who(), args.capability, args.provider), timeout=60)
    if printed_json(args, cleared):
        return 0
    if not cleared:
        print("no active fault to clear")
    for event in cleared:
        print(f"cleared fault {event.fault.id} on {event.fault.key}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("chaos", help="live faults on a running provider, for game days (inject, list, clear)")
    csub = p.add_subparsers(dest="chaos_command", required=True, metavar="SUBCOMMAND")
    inj = csub.add_parser("inject", help="fail or slow down one provider's calls for a bounded time")
    inj.add_argument("capability")
    inj.add_argument("provider")
    inj.add_argument("--fail", type=float, metavar="RATE", help="share of calls failed, 0..1 (default: 1 with --error)")
    inj.add_argument("--latency-ms", type=float, metavar="MS", help="latency added before each call")
    inj.add_argument("--error", metavar="KIND", help="the kind a failed call gets (default transient): transient, "
                     "timeout, rate_limited, auth, malformed_response, crashed")
    inj.add_argument("--for", dest="for_s", type=float, metavar="SECONDS",
                     help="how long the fault lasts (required); it ends by itself")
    finish(inj, cmd_inject, json=True)
    finish(csub.add_parser("list", help="the active faults"), cmd_list, json=True)
    cl = csub.add_parser("clear", help="remove the faults of one provider, of a capability, or all")
    cl.add_argument("capability", nargs="?")
    cl.add_argument("provider", nargs="?")
    finish(cl, cmd_clear, json=True)
