"""`aicmo-gateway doctor`: the local setup, checked before anything is deployed.

Each check gives findings: `ok`, `problem` (something to fix first: exit 1),
`warning` or `info`. The checks, in order:

1. config: the file parses and validates (every problem with its field path);
2. environment: every `${NAME}` the file reads is set (or has a default);
3. Ray: the cluster answers at the address (`--address`, `$RAY_ADDRESS`,
   else a local one), and token authentication is set up if it needs it;
   whether the gateway is deployed there and matches this file;
4. providers: each provider's health check, run from this machine with the
   adapters built from the validated config (never a billable call: the same
   `probe()` the gateway uses);
5. hooks: each dotted path imports here (a warning only: it may be installed
   on the cluster's nodes and not here);
6. state: the directory is writable here, when it is a local path; and,
   with a cluster, every node that may host a gateway actor sees the same
   store (actors/ops/shared_store.py);
7. the head node: whether the cluster's GCS is fault tolerant, its Redis
   answers, the workers wait long enough for a head that is down, and the
   state store is not a file on one machine (actors/ops/gcs.py); without a
   cluster, whether the Redis named by RAY_REDIS_ADDRESS here answers.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["Finding", "check_config", "check_gcs", "check_store_and_head", "check_hooks", "check_local_redis", "check_providers", "check_ray",
           "check_shared_store", "check_state_dir"]


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    check: str               # config, env, ray, auth, gateway, provider, hook, state
    status: str              # ok, problem, warning, info
    subject: str
    detail: str = ""
    fix: str | None = None


def _env_problem(message: str) -> str | None:
    prefix, suffix = "environment variable ", " is not set"
    if message.startswith(prefix) and message.endswith(suffix):
        return message[len(prefix):-len(suffix)]
    return None


def check_config(path: str, env: dict[str, str] | None = None) -> tuple[list[Finding], Any]:
    """The config and its environment. Returns the findings and the config
    (None when invalid). Raises OSError when the file cannot be read."""
    import yaml

    from actors.config import interpolate_env, load_config
    from actors.errors import ConfigError

    env = dict(os.environ) if env is None else env
    text = Path(path).read_text()
    findings: list[Finding] = []
    refs: dict[str, str] = {}
    try:
        raw = yaml.safe_load(text)
        interpolate_env(raw, env, (), refs, [])
    except yaml.YAMLError:
        raw = None
    by_var: dict[str, list[str]] = {}
    for field, var in refs.items():
        by_var.setdefault(var, []).append(field)
    missing: set[str] = set()
    cfg = None
    try:
        cfg = load_config(path, env)
    except ConfigError as exc:
        missing = {v for _, m in exc.problems if (v := _env_problem(m)) is not None}
        for field, message in exc.problems:
            if _env_problem(message) is not None or refs.get(field) in missing:
                continue  # said once, under env, with the variable's name
            findings.append(Finding(check="config", status="problem", subject=field or path, detail=message,
                                    fix="fix this field (`aicmo-gateway config schema` prints every field)"))
    defaults: list[str] = []
    for var in sorted(by_var):
        where = ", ".join(by_var[var][:3]) + (" ..." if len(by_var[var]) > 3 else "")
        if var in missing:
            findings.append(Finding(check="env", status="problem", subject=f"${var}", detail=f"not set; read by {where}",
                                    fix=f"export {var}=... in the shell (or service) you run `aicmo-gateway up` from: "
                                        f"the config is read there, and the value travels to the actors"))
        elif var in env and not env[var].strip():
            has_default = f"${{{var}:-" in text
            findings.append(Finding(check="env", status="warning", subject=f"${var}", detail=f"set but empty; read by {where}",
                                    fix=f"give {var} its value" + (", or unset it to use the file's default"
                                                                   if has_default else "")))
        elif var in env:
            findings.append(Finding(check="env", status="ok", subject=f"${var}", detail=f"set; read by {where}"))
        else:
            defaults.append(var)
    if defaults:
        findings.append(Finding(check="env", status="info", subject=f"{len(defaults)} variable(s) not set",
                                detail=f"the file's defaults are used: {', '.join(defaults)}"))
    if cfg is not None:
        providers = sum(len(c.providers) for c in cfg.capabilities.values())
        findings.insert(0, Finding(check="config", status="ok", subject=path,
                                   detail=f"valid: {len(cfg.capabilities)} capabilities, {providers} providers, "
                                          f"namespace {cfg.namespace!r}"))
    elif not any(f.check == "config" for f in findings):
        findings.insert(0, Finding(check="config", status="problem", subject=path,
                                   detail="invalid until the environment variables below are set"))
    return findings, cfg


def _token_source(env: dict[str, str]) -> str | None:
    if env.get("RAY_AUTH_TOKEN"):
        return "$RAY_AUTH_TOKEN"
    token_file = env.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    return token_file if os.path.exists(token_file) else None


def check_ray(address: str | None, namespace: str, spec_digest: str | None,
              env: dict[str, str] | None = None, while_connected: Any = None) -> list[Finding]:
    """Connects this process to the cluster (ray.init) when it answers, and
    runs `while_connected()` (more findings) before it disconnects."""
    import logging
    import socket

    env = dict(os.environ) if env is None else env
    target = address or env.get("RAY_ADDRESS") or "auto"
    token = _token_source(env)
    mode = env.get("RAY_AUTH_MODE")
    findings = [Finding(check="auth", status="info", subject="token authentication",
                        detail=f"RAY_AUTH_MODE={mode or '(unset)'}; token: {token or 'none found'}")]
    host, sep, port = target.removeprefix("ray://").rpartition(":")
    if sep and port.isdigit() and host:
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as exc:
            return findings + [Finding(check="ray", status="problem", subject=target,
                                       detail=f"nothing answers: {exc.strerror or exc}",
                                       fix="start a cluster with `ray start --head`, or pass --address / set "
                                           "RAY_ADDRESS to the head's host:port (6379 by default)")]
    import ray

    try:
        ray.init(address=target, namespace=namespace, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - every failure to connect is a finding
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        auth = "auth" in first.lower() or "token" in first.lower()
        if token is None and (auth or target != "auto"):
            fix = ("the cluster may use token authentication (Ray's default for `ray start --head`): copy its token "
                   "(`ray get-auth-token` on the head) to ~/.ray/auth_token, or set RAY_AUTH_TOKEN: the gateway's "
                   "commands then switch Ray to token mode themselves")
        elif target == "auto":
            fix = "start a cluster with `ray start --head`, or pass --address / set RAY_ADDRESS"
        else:
            fix = "check the address and that the head's GCS port is open from here"
        return findings + [Finding(check="ray", status="problem", subject=target, detail=first, fix=fix)]
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        findings.append(Finding(check="ray", status="ok", subject=target,
                                detail=f"connected: Ray {ray.__version__}, {len(nodes)} alive node(s)"))
        from actors.client import Gateway
        from actors.errors import NotDeployed

        try:
            deployed = ray.get(Gateway(namespace).supervisor().digest.remote(), timeout=30)
            if spec_digest is None or deployed == spec_digest:
                findings.append(Finding(check="gateway", status="ok", subject=namespace,
                                        detail="deployed" + (" and matches this config" if spec_digest else "")))
            else:
                findings.append(Finding(check="gateway", status="info", subject=namespace,
                                        detail="deployed from a different config (or environment)",
                                        fix="`aicmo-gateway up --config <this file>` updates it"))
        except NotDeployed:
            findings.append(Finding(check="gateway", status="info", subject=namespace, detail="not deployed yet",
                                    fix="`aicmo-gateway up --config <this file>`"))
        if while_connected is not None:
            findings += while_connected()
    finally:
        ray.shutdown()
    return findings


def check_providers(spec: Any, timeout_s: float = 10.0) -> list[Finding]:
    from actors.errors import ErrorKind
    from actors.ops.reach import probe_specs, probe_targets
    from actors.ops.recommend import facts_of, for_provider

    providers = [p for c in spec.capabilities for p in c.providers]
    targets = probe_targets(providers)
    findings: list[Finding] = []
    for p in providers:
        for setting in _cleartext(p):
            fix = ("set tls_mode to starttls (port 587) or implicit (465)" if setting == "tls_mode"
                   else f"use an https:// address in {p.config_path}.settings.{setting}")
            findings.append(Finding(check="provider", status="warning", subject=f"{p.capability}/{p.name}",
                                    detail=f"{p.adapter}: credentials cross the network unencrypted "
                                           f"(settings.{setting})", fix=fix))
    for p in providers:
        if p in targets:
            continue
        why = ("talks to no outside service" if not p.reaches_network or not p.delivers
               else f"the {p.adapter} API offers no free health check with these settings")
        findings.append(Finding(check="provider", status="info", subject=f"{p.capability}/{p.name}",
                                detail=f"not probed: {why}"))
    results = asyncio.run(probe_specs(targets, timeout_s)) if targets else []
    for p, r in zip(targets, results, strict=True):
        subject = f"{p.capability}/{p.name}"
        if r.ok:
            findings.append(Finding(check="provider", status="ok", subject=subject,
                                    detail=f"{p.adapter}: health check passes from here ({r.latency_ms:.0f} ms)"))
            continue
        if r.error_kind is ErrorKind.AUTH:  # the fix names the setting and its variable
            recs = for_provider(facts_of(p), None, r, 0.0)
            fix = recs[0].fix if recs else None
        elif r.error_kind is ErrorKind.RATE_LIMITED:
            fix = "the provider is rate-limiting this key now; try again later, or check its quota"
        else:
            fix = (f"check that the service is up and reachable from this machine at the address in "
                   f"{p.config_path}.settings (host/port or base_url), and any proxy variables here")
        findings.append(Finding(check="provider", status="problem", subject=subject,
                                detail=f"{p.adapter}: {r.error_kind}: {r.error}", fix=fix))
    return findings


def _cleartext(p: Any) -> list[str]:
    from actors.adapters.registry import get_adapter_class

    cls = get_adapter_class(p.adapter)
    return cls.cleartext_settings(cls.Settings.model_validate(p.settings))


def check_hooks(cfg: Any) -> list[Finding]:
    from actors.ops.hooks import load_hook

    paths: dict[str, str] = {}
    for event in ("on_success", "on_failure", "on_health_change"):
        for path in getattr(cfg.hooks, event):
            paths[path] = f"hooks.{event}"
        for cap_name, cap in cfg.capabilities.items():
            for path in getattr(cap.hooks, event):
                paths[path] = f"capabilities.{cap_name}.hooks.{event}"
    findings = []
    for path, where in paths.items():
        try:
            load_hook(path)
            findings.append(Finding(check="hook", status="ok", subject=path, detail=f"imports here ({where})"))
        except Exception as exc:  # noqa: BLE001
            findings.append(Finding(check="hook", status="warning", subject=path, detail=f"{where}: {exc}",
                                    fix="fine if it is installed on the cluster's nodes only; otherwise install "
                                        "its package there (or add it to the job's runtime_env)"))
    return findings


def check_shared_store(spec: Any, report: Any = None) -> list[Finding]:
    """Through the cluster this process is connected to: whether every node
    that may host a gateway actor sees the same state store (`report`: that
    check's report, when it was run already)."""
    from actors.ops.shared_store import check_shared_store as run_check

    report = report if report is not None else asyncio.run(run_check(spec))
    if report.shared:
        return [Finding(check="state", status="ok", subject=report.url, detail=report.explain())]
    problem, _, fix = report.explain().partition("\nEvery actor")
    return [Finding(check="state", status="problem", subject=report.url, detail=problem,
                    fix="every actor" + fix if fix else None)]


def check_state_dir(state_url: str) -> list[Finding]:
    if "://" in state_url:
        from actors.durable import without_password  # the raw URL may hold the store's password

        return [Finding(check="state", status="info", subject=without_password(state_url),
                        detail="not a local directory: not checked")]
    path = Path(state_url).expanduser()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK):
        if path.exists() and path.stat().st_mode & 0o077:
            return [Finding(check="state", status="warning", subject=str(path),
                            detail=f"other users may read it (mode {path.stat().st_mode & 0o777:o}): it holds payloads "
                                   "and results", fix=f"chmod 700 {path}")]
        return [Finding(check="state", status="ok", subject=str(path),
                        detail="writable here (the actors use this path on their own nodes)")]
    return [Finding(check="state", status="warning", subject=str(path), detail=f"{probe} is not writable here",
                    fix="set state.url (or $AICMO_STATE_DIR) to a directory the Ray nodes can write")]


_STATUS = {"ok": "ok", "info": "info", "warning": "warning", "critical": "problem"}


def _from_gcs(findings: Any) -> list[Finding]:
    return [Finding(check="head", status=_STATUS[f.severity], subject=f.subject, detail=f.problem, fix=f.fix)
            for f in findings]


def check_store_and_head(spec: Any) -> list[Finding]:
    """Through the cluster this process is connected to: whether the nodes
    share the state store, and whether the cluster survives its head node."""
    from actors.ops.shared_store import check_shared_store as run_check

    report = asyncio.run(run_check(spec))
    return check_shared_store(spec, report) + check_gcs(spec, report)


def check_gcs(spec: Any, shared: Any = None) -> list[Finding]:
    """Through the cluster this process is connected to: whether it survives
    its head node (`shared`: the shared-store check's report, if run)."""
    from actors.ops.gcs import gather_facts, gcs_findings, with_shared_store

    supervisor = _supervisor_node(spec.namespace)
    facts = asyncio.run(gather_facts(spec.state.display, supervisor_node=supervisor))
    return _from_gcs(gcs_findings(with_shared_store(facts, shared)))


def _supervisor_node(namespace: str) -> str | None:
    """The node of the deployed supervisor (which opens the state store), if any."""
    import ray

    from actors.names import SUPERVISOR_NAME

    try:  # a supervisor deployed before node_id() existed answers with an error: unknown
        actor = ray.get_actor(SUPERVISOR_NAME, namespace=namespace)
        return str(ray.get(actor.node_id.remote(), timeout=5))
    except Exception:  # noqa: BLE001 - not deployed, or an older supervisor: unknown
        return None


def check_local_redis(env: dict[str, str] | None = None) -> list[Finding]:
    """RAY_REDIS_ADDRESS in this environment (doctor run on the head's machine): does that Redis answer?"""
    from actors.ops.gcs import local_redis_findings

    return _from_gcs(local_redis_findings(dict(os.environ) if env is None else env))
