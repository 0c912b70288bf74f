"""Shared by the ops tests: a router harness wired to RouterOps, with a
canary secret in its providers' spec."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from actors.config import parse_config
from actors.ops.metrics import MemoryRecorder
from actors.ops.observers import RouterOps
from actors.specs import AuditSpec, build_spec
from tests.unit.harness import Harness

CANARY = "canary-Zt4Qx9-SECRET-do-not-log"
ADDRESS = "ann.lee@example.com"


def canary_spec(names: list[str]) -> Any:
    """A capability whose providers' specs know the canary as a secret
    (read from an environment variable whose name says so)."""
    # Scripted providers answer each attempt once, in order: no rounds tried again.
    raw = {"state": {"url": "sqlite:///:memory:"}, "policy": {"routing": {"retry_rounds": 0}},
           "capabilities": {"email_sending": {"providers": [
        {"name": n, "adapter": "simulated", "settings": {"ledger": "${CANARY_TOKEN}"}} for n in names]}}}
    return build_spec(parse_config(raw, env={"CANARY_TOKEN": CANARY})).capabilities[0]


def wired(scripts: dict[str, list[Any]], state_dir: Path, *, hooks: dict[str, list[str]] | None = None,
          hook_loader: Any = None, max_bytes: int = 10_000_000, backups: int = 5,
          audit_key: bytes | None = None) -> tuple[Harness, RouterOps, MemoryRecorder]:
    """A Harness whose router has RouterOps as its observer, writing its audit
    log under `state_dir` and its metrics to a MemoryRecorder."""
    h = Harness(scripts)
    base = canary_spec(list(scripts))
    spec = msgspec.structs.replace(base, state=msgspec.structs.replace(base.state, url=str(state_dir)),
                                   audit=AuditSpec(enabled=True, max_bytes=max_bytes, backups=backups))
    if hooks:
        spec = msgspec.structs.replace(spec, hooks=msgspec.structs.replace(spec.hooks, **hooks))
    h.spec = spec
    for name in scripts:
        h.restart_provider(name)
    router = h.restart_router()
    recorder = MemoryRecorder()
    ops = RouterOps(spec, recorder=recorder, hook_loader=hook_loader, audit_key=audit_key)
    router.observers.append(ops.observe)
    return h, ops, recorder


def run(coro: Any) -> Any:
    return asyncio.run(coro)
