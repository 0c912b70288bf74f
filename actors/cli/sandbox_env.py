"""The settings of the `aicmo-gateway sandbox` running on this machine, for
`up` and `doctor`, so that the README's walkthrough (`aicmo-gateway sandbox &`
then `aicmo-gateway up --config config/default.yaml`) works as written.

The stand-ins listen on fixed ports (one sandbox per machine), but their TLS
CA files are made afresh at each start, and Dovecot may be missing: a config
that reads `${AICMO_SANDBOX_*}` needs the running sandbox's values, which
`sandbox` announces in one file (`announce`, removed when it stops) and
`fill_in` reads. Only variables named `AICMO_SANDBOX_*`, only when unset,
only for a config that reads them, and only from a sandbox whose process is
alive: a user's own settings always win, and a config for real providers is
never touched. A sandbox still starting is waited for (a `&` in a shell
returns before its servers listen).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PREFIX", "RunningSandbox", "announce", "announcement_path", "fill_in", "running", "use_for", "withdraw"]

PREFIX = "AICMO_SANDBOX_"
# How long `up` waits for a sandbox that has started but is not listening yet.
STARTING_WAIT_S = 60.0


def announcement_path() -> Path:
    return Path(os.path.expanduser("~/.local/state/aicmo-gateway")) / "sandbox.json"


@dataclass(frozen=True)
class RunningSandbox:
    pid: int
    env: dict[str, str]


def announce(pid: int, env: dict[str, str] | None) -> Path:
    """Say that the sandbox of process `pid` is starting (env None) or is up
    with these settings. Written whole or not at all (rename)."""
    path = announcement_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{pid}")
    tmp.write_text(json.dumps({"pid": pid, "ready": env is not None, "env": env or {}}))
    tmp.replace(path)
    return path


def withdraw(pid: int) -> None:
    """Remove the announcement if it is this process's."""
    found = _read()
    if found is not None and found.get("pid") == pid:
        announcement_path().unlink(missing_ok=True)


def running(wait_s: float = STARTING_WAIT_S, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> RunningSandbox | None:
    """The sandbox running on this machine, once it is up; None when there is
    none (or it died, or did not come up within `wait_s`)."""
    deadline = clock() + wait_s
    while True:
        found = _read()
        if found is None or not _alive(found.get("pid")):
            return None
        if found.get("ready"):
            return RunningSandbox(int(found["pid"]), {str(k): str(v) for k, v in found.get("env", {}).items()})
        if clock() >= deadline:
            return None
        sleep(0.2)


def fill_in(config_text: str, environ: MutableMapping[str, str],
            find: Callable[[], RunningSandbox | None] = running) -> tuple[RunningSandbox | None, list[str]]:
    """Set the running sandbox's `AICMO_SANDBOX_*` variables that `environ`
    lacks, when the config reads any; returns the sandbox and the names set."""
    if PREFIX not in config_text:
        return None, []
    sandbox = find()
    if sandbox is None:
        return None, []
    names = sorted(k for k in sandbox.env if k.startswith(PREFIX) and k not in environ)
    for name in names:
        environ[name] = sandbox.env[name]
    return sandbox, names


def use_for(config_path: str) -> list[str]:
    """`fill_in` for the config file at `config_path` and this process's
    environment, saying on stderr which variables it set."""
    try:
        text = Path(config_path).read_text()
    except OSError:
        return []  # loading the config says what is wrong with the file
    sandbox, names = fill_in(text, os.environ)
    if sandbox is not None and names:
        from actors.cli.console import console

        console(stderr=True).print(f"using the settings of the sandbox running here (pid {sandbox.pid}): "
                                   f"{', '.join(names)}")
    return names


def _read() -> dict | None:
    try:
        found = json.loads(announcement_path().read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    # A pid reused by another program after a sandbox was killed: not a sandbox.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid
    return b"sandbox" in cmdline
