"""The durable audit log: every routing decision, one JSON line each.

Beyond the router's in-memory ring of recent operations, each router appends
what it decided to `<state dir>/audit/audit-<capability>.jsonl`: the
candidates in order, why each skipped provider was skipped, every attempt
with its timing, and the outcome. One writer per router (one router per
capability); files rotate by size (`.1` is the newest rotated file).

Nothing secret or personal is written: idempotency keys and email addresses
are hashed with HMAC-SHA256 under the deployment's secret `key`
(actors/ops/privacy.py), error texts are redacted again with every secret
the router's providers know.

On the request's path `observe` only appends the frozen `Decision` to a
buffer; `flush` (run by the router's background task, in a thread) encodes
and writes. A router killed outright loses at most the last
`flush_interval_s` of lines.

A line:

    {"at": 1764097000.123, "time": "2025-11-25T19:36:40.123Z", "capability": "email_sending",
     "method": "send_email", "request_id": "9f...", "ok": false, "outcome": "all_providers_failed",
     "provider": null, "key": "hmac:5c1f...", "dry_run": false, "replayed": false, "outbox_id": null,
     "draining": false, "elapsed_ms": 31.2, "candidates": ["smtp", "sendgrid"],
     "skipped": {"mailgun": "throttled for 12.0s more"},
     "skips": [{"provider": "mailgun", "reason": "throttled", "detail": "throttled for 12.0s more"}],
     "attempts": [{"provider": "smtp", "ok": false, "error_kind": "transient", "error": "...",
                   "latency_ms": 12.1, "trial": false, "hedge": false, "maybe_delivered": false}, ...],
     "error": "every provider failed ...", "trace_id": "4bf92f35..."}

`skips` carries each skipped provider's typed reason (actors/policy/skips.py:
`throttled`, `quota_exhausted`, `retry_budget`, ...) beside the words,
as the request's `InvokeResult.skips` does; `skipped` (provider -> words) is
kept for the readers written before it. `trace_id`: the request's
OpenTelemetry trace (actors/telemetry), null when it was not traced.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from actors.messages import Decision
from actors.ops.privacy import UNKNOWN_METHOD, hash_key, hide_method, method_label, scrub
from actors.policy.outliers.events import OutlierEvent

__all__ = ["AuditLog", "audit_dir", "audit_record", "last_lines", "outlier_record"]

log = logging.getLogger("aicmo.audit")

# Decisions waiting for a flush beyond this many are dropped (and counted):
# a disk that stopped taking writes must not grow the router's memory.
MAX_BUFFERED = 100_000
# An error text is cut to this many characters: a caller's long input echoed
# in an error must not make one line outgrow `max_bytes`, rotating the
# file on every write and pushing out its backups.
MAX_ERROR_CHARS = 1_000


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR_CHARS:
        return text
    return text[:MAX_ERROR_CHARS] + f"... ({len(text) - MAX_ERROR_CHARS} more characters)"


def audit_dir(state_url: str, namespace: str | None = None, env: dict[str, str] | None = None) -> Path | None:
    """Where a gateway with this state store keeps its audit files, on the
    router's node, or None (an in-memory store). With a database store, the
    local state directory ($AICMO_STATE_DIR, else the default) of the
    gateway's `namespace` (None: no audit files)."""
    if ":memory:" in state_url:
        return None
    if state_url.startswith("sqlite:///"):
        return Path(state_url[len("sqlite://"):]).expanduser().parent / "audit"
    if "://" in state_url:
        if namespace is None:
            return None
        from actors.specs import DEFAULT_STATE_DIR

        env = os.environ if env is None else env
        return Path(env.get("AICMO_STATE_DIR") or DEFAULT_STATE_DIR).expanduser() / namespace / "audit"
    return Path(state_url).expanduser() / "audit"


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def audit_record(d: Decision, redact: Callable[[str], str] | None = None, key: bytes | None = None) -> dict[str, Any]:
    """One decision as the audit log stores it: keys hashed, texts scrubbed.
    A method the capability does not have is recorded as `unknown`, in the
    texts too (the router's error quotes it)."""
    method = method_label(d.capability, d.method)
    if method == UNKNOWN_METHOD and d.method:
        raw, redact_first = d.method, redact

        def redact(text: str) -> str:  # type: ignore[no-redef]
            text = hide_method(text, raw)
            return redact_first(text) if redact_first is not None else text
    return {
        "at": round(d.at, 3),
        "time": _iso(d.at),
        "capability": d.capability,
        "method": method,
        "request_id": d.request_id,
        "ok": d.ok,
        "outcome": "ok" if d.ok else (str(d.error_kind) if d.error_kind else "failed"),
        "provider": d.provider,
        "key": hash_key(d.idempotency_key, key),
        "dry_run": d.dry_run,
        "replayed": d.replayed,
        "outbox_id": d.outbox_id,
        "draining": d.draining,
        "elapsed_ms": d.elapsed_ms,
        "candidates": list(d.candidates),
        "skipped": {name: _cut(scrub(reason, redact, key)) for name, reason in d.skipped.items()},
        "skips": [{"provider": s.provider, "reason": str(s.reason), "detail": _cut(scrub(s.detail, redact, key))}
                  for s in d.skips],
        "attempts": [
            {"provider": a.provider, "ok": a.ok, "error_kind": str(a.error_kind) if a.error_kind else None,
             "error": _cut(scrub(a.error, redact, key)), "latency_ms": a.latency_ms, "trial": a.trial, "hedge": a.hedge,
             "maybe_delivered": a.maybe_delivered, "injected": a.injected}
            for a in d.attempts
        ],
        "error": _cut(scrub(d.error, redact, key)),
        "trace_id": d.trace_id,
    }


def outlier_record(event: OutlierEvent, capability: str) -> dict[str, Any]:
    """An event as an audit line: {"type": "outlier", "event": "Ejected", ...},
    stamped with the time the event carries (each kind has its `at`: the
    sweep's clock, never this process's)."""
    fields = msgspec.to_builtins(event)
    name = fields.pop("type", type(event).__name__)
    at = float(fields["at"])
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
    return {"type": "outlier", "event": name, "capability": capability, **fields, "at": round(at, 3), "time": stamp}


def delivery_health_record(transition: Any, capability: str) -> dict[str, Any]:
    """A verdict from delivery outcomes that changed, as an audit line:
    {"type": "delivery_health", "provider", "before", "after", "evidence", ...}."""
    fields = msgspec.to_builtins(transition)
    at = float(fields["at"])
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
    return {"type": "delivery_health", "capability": capability, **fields, "at": round(at, 3), "time": stamp}


def last_lines(path: Path, n: int, block: int = 65536) -> list[str]:
    """The last `n` lines of a file, reading from its end."""
    if n <= 0:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            pos = f.tell()
            data = b""
            while pos > 0 and data.count(b"\n") <= n:
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-n:]


class AuditLog:
    """The audit file of one router."""

    def __init__(self, directory: Path, capability: str, *, max_bytes: int = 10_000_000, backups: int = 5,
                 redact: Callable[[str], str] | None = None, key: bytes | None = None, replica: int = 0):
        """`key`: the deployment's secret for the HMAC of keys and addresses;
        None falls back to unkeyed SHA-256 (tests only). Router replica 0
        writes `audit-<capability>.jsonl`, replica N `audit-<capability>.replica-N.jsonl`:
        two processes never append to one file."""
        self.directory = directory
        self.capability = capability
        self.path = directory / (f"audit-{capability}.jsonl" if replica == 0 else f"audit-{capability}.replica-{replica}.jsonl")
        self.max_bytes = max_bytes
        self.backups = backups
        self._redact = redact
        self.key = key
        self._buffer: list[Decision | dict[str, Any]] = []
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None

    # --- on the request's path -----------------------------------------------
    def observe(self, decision: Decision | dict[str, Any]) -> None:
        """A decision, or a record of another type (an outlier event: {"type": "outlier", ...})."""
        if len(self._buffer) >= MAX_BUFFERED:
            self.dropped += 1
            return
        self._buffer.append(decision)

    def note(self, record: dict[str, Any]) -> None:
        """A record that is not a decision (a chaos event: actors/ops/chaos_audit.py), written as it is."""
        if len(self._buffer) >= MAX_BUFFERED:
            self.dropped += 1
            return
        self._buffer.append(record)

    # --- off it ------------------------------------------------------------------
    def take(self) -> list[Decision | dict[str, Any]]:
        """What is buffered, handed over for a write (call from the event loop's thread)."""
        batch, self._buffer = self._buffer, []
        return batch

    def hold(self, batch: list[Decision | dict[str, Any]]) -> None:
        """A batch taken but not written (the key to hash it with is not
        loaded yet) goes back ahead of what came since; past MAX_BUFFERED the
        oldest lines are dropped, and counted."""
        self._buffer = batch + self._buffer
        excess = len(self._buffer) - MAX_BUFFERED
        if excess > 0:
            del self._buffer[:excess]
            self.dropped += excess

    def write(self, batch: list[Decision | dict[str, Any]]) -> int:
        """Encode and append; may run in a thread. Returns lines written."""
        if not batch:
            return 0
        text = "".join(json.dumps(audit_record(d, self._redact, self.key) if isinstance(d, Decision) else d,
                                  separators=(",", ":"), ensure_ascii=False) + "\n" for d in batch)
        data = text.encode("utf-8", "replace")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._rotate_if_needed(len(data))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            self.dropped += len(batch)
            if self.last_error is None:
                log.error("audit log %s: cannot write: %s (lines are dropped until it can)", self.path, exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return 0
        self.written += len(batch)
        self.last_error = None
        return len(batch)

    def flush(self) -> int:
        return self.write(self.take())

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        if self.backups <= 0:
            self.path.unlink()
            return
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    # --- reading, for `aicmo-gateway audit tail` ----------------------------------
    def files(self) -> list[Path]:
        """Newest first: the current file, then .1, .2, ..."""
        out = [self.path] if self.path.exists() else []
        for i in range(1, self.backups + 1):
            p = self.path.with_name(f"{self.path.name}.{i}")
            if p.exists():
                out.append(p)
        return out

    def tail(self, n: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The last `n` records (oldest first) and a cursor at the end of the file."""
        lines: list[str] = []
        for p in self.files():
            lines = last_lines(p, n - len(lines)) + lines
            if len(lines) >= n:
                break
        return _parse(lines), self.cursor()

    def cursor(self) -> dict[str, int]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {"ino": 0, "offset": 0}
        return {"ino": st.st_ino, "offset": st.st_size}

    def since(self, cursor: dict[str, int] | None, limit: int = 1000) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Records appended after `cursor` (from `tail` or an earlier `since`), and the next cursor.
        A rotation in between is followed: the rest of the rotated file first."""
        if not cursor:
            return [], self.cursor()
        current = self.cursor()
        lines: list[str] = []
        offset = cursor.get("offset", 0)
        if cursor.get("ino") and cursor["ino"] != current["ino"]:
            # Rotated since: finish the file the cursor was in, then every newer one.
            rotated = self.files()[1:]  # .1, .2, ...: newest first
            inodes = [p.stat().st_ino for p in rotated]
            if cursor["ino"] in inodes:
                i = inodes.index(cursor["ino"])
                lines += _read_from(rotated[i], offset)[0]
            else:  # rotated out of the kept files: all that is left
                i = len(rotated)
            for newer in reversed(rotated[:i]):
                lines += _read_from(newer, 0)[0]
            offset = 0
        new, consumed = _read_from(self.path, offset)
        lines += new
        if len(lines) > limit:
            lines = lines[-limit:]
        return _parse(lines), {"ino": current["ino"], "offset": offset + consumed}

    def status(self) -> dict[str, Any]:
        return {"path": str(self.path), "written": self.written, "dropped": self.dropped, "buffered": len(self._buffer),
                "last_error": self.last_error}


def _read_from(path: Path, offset: int) -> tuple[list[str], int]:
    """Whole lines from `offset` on, and the bytes they took (a partial last
    line is left for next time)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n")
    if end < 0:
        return [], 0
    return data[:end].decode("utf-8", "replace").split("\n"), end + 1


def _parse(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
