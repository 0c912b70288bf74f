"""`aicmo-gateway sandbox [--detach | --stop]`: the local stand-ins of every
provider that config/default.yaml talks to, on their fixed ports.

In the foreground until Ctrl-C (or SIGTERM); with --detach in a process of
its own, the command returning once they listen, so a script (the README's
walkthrough) can go on to `up` at once; --stop ends the one running. The
running sandbox announces its settings (TLS CA files, ports) for `up` and
`doctor` on this machine: actors/cli/sandbox_env.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from actors.cli import sandbox_env
from actors.cli.connect import CliError
from actors.cli.console import console

__all__ = ["register"]

# How long --detach waits for the stand-ins to listen, and --stop for them to end.
DETACH_WAIT_S = 120.0
STOP_WAIT_S = 30.0


def _log_path() -> Any:
    return sandbox_env.announcement_path().with_name("sandbox.log")


def cmd_sandbox(args: argparse.Namespace) -> int:
    if args.stop:
        return _stop()
    from actors import sandbox

    if sandbox.missing():
        raise CliError(2, sandbox.install_hint("`aicmo-gateway sandbox`"))
    running = sandbox_env.running(wait_s=0)
    if running is not None:
        if args.detach:
            print(f"the stand-ins are already running (pid {running.pid}); `aicmo-gateway sandbox --stop` ends them")
            return 0
        raise CliError(2, f"a sandbox is already running here (pid {running.pid}): its ports are taken; "
                          "`aicmo-gateway sandbox --stop` ends it")
    return _detach() if args.detach else _serve()


def _serve() -> int:
    """Run the stand-ins here until Ctrl-C or SIGTERM."""
    from actors.sandbox.stack import SandboxStack

    pid = os.getpid()
    sandbox_env.announce(pid, None)  # `up` waits for a sandbox that is starting
    try:
        stack = SandboxStack(fixed_ports=True).start()
    except (OSError, RuntimeError) as exc:
        sandbox_env.withdraw(pid)
        raise CliError(2, f"cannot start the stand-ins: {exc} (is another program on their ports, 18101-18993?)") from None
    env_file = stack.root / "sandbox.env"
    env_file.write_text("".join(f"export {k}={v}\n" for k, v in sorted(stack.env().items())))
    sandbox_env.announce(pid, stack.env())
    out = console()
    out.print(f"stand-ins for every provider of config/default.yaml are up ({len(stack.http)} HTTP APIs, SMTP, "
              + ("Dovecot IMAP)" if stack.imap else f"no IMAP: {stack.imap_unavailable})"))
    for name, s in sorted(stack.http.items()):
        out.print(f"  {name:<12} {s.base_url}")
    out.print(f"  {'smtp':<12} 127.0.0.1:{stack.smtp.port} (STARTTLS)")
    out.print("\n`aicmo-gateway up --config config/default.yaml` on this machine uses them: it finds their TLS CA "
              f"files and ports itself.\nOther programs: `source {env_file}`. Ctrl-C stops them.")
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox_env.withdraw(pid)
        stack.stop()
    return 0


def _detach() -> int:
    """Start `aicmo-gateway sandbox` in a session of its own and return once it is up."""
    log_file = _log_path()
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(log_file, "wb") as log:
        child = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + DETACH_WAIT_S
    while True:
        running = sandbox_env.running(wait_s=0)
        if running is not None and running.pid == child.pid:
            print(f"stand-ins of every provider are up in the background (pid {child.pid}, log {log_file}); "
                  "`aicmo-gateway sandbox --stop` ends them")
            return 0
        if child.poll() is not None or time.monotonic() > deadline:
            if child.poll() is None:
                child.terminate()
            tail = log_file.read_text(errors="replace").strip().splitlines()[-5:]
            raise CliError(2, "the stand-ins did not come up" + ("" if child.poll() is None else
                                                                 f" (exit {child.returncode})")
                           + ":\n  " + "\n  ".join(tail))
        time.sleep(0.2)


def _stop() -> int:
    running = sandbox_env.running(wait_s=0)
    if running is None:
        print("no sandbox is running here")
        return 0
    os.kill(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while sandbox_env.running(wait_s=0) is not None:
        if time.monotonic() > deadline:
            raise CliError(1, f"the sandbox (pid {running.pid}) did not stop within {STOP_WAIT_S:.0f} s")
        time.sleep(0.2)
    print(f"stopped the sandbox (pid {running.pid})")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("sandbox", help="run local stand-ins of every provider (what config/default.yaml talks to)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--detach", action="store_true",
                      help="run them in the background; return once they listen")
    mode.add_argument("--stop", action="store_true", help="stop the sandbox running here")
    p.set_defaults(func=cmd_sandbox)


if __name__ == "__main__":  # the detached child `_detach` starts
    try:
        sys.exit(_serve())
    except CliError as exc:
        print(f"aicmo-gateway sandbox: {exc.message}", file=sys.stderr)
        sys.exit(exc.code)
