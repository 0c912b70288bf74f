"""Will the gateway survive its cluster's head node? (issue 19; README
"Surviving the head node"; docs/head-node.md sections 2.2 to 2.8)

Ray keeps the cluster's metadata (the GCS) in the head's memory unless it
is backed by Redis (`RAY_REDIS_ADDRESS`) or an embedded RocksDB
(`RAY_gcs_storage=rocksdb`). Without that, losing the head loses every
gateway actor on every node; with it, actors on the workers serve on and
the head comes back to them, provided the workers wait for it
(`RAY_gcs_rpc_server_reconnect_timeout_s`, 60 s by default) and the Redis
answers. A state store that is a file on one machine of a multi-node
cluster is lost with that machine, whatever the GCS does.

`gcs_findings(facts)` is pure: what `doctor` and the self-check say, as
typed findings with their fix. `gather_facts` reads them from a connected
cluster (the head's storage tag, tasks pinned to the head and to each
worker reading their environment, a PING of the head's Redis from the
head); `ping_redis` is the only I/O of its own.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from typing import Literal

import msgspec

from actors.messages import Recommendation
from actors.ops.shared_store import SharedStoreReport

__all__ = ["MIN_RECONNECT_S", "GcsFacts", "GcsFinding", "WorkerWait", "gather_facts", "gcs_findings",
           "local_redis_findings", "ping_redis", "state_is_local", "with_shared_store"]

# What a worker should wait for a head that is down: a head's restart took up to 24 s on a loaded
# machine, a machine's replacement takes minutes. KubeRay sets 600.
MIN_RECONNECT_S = 300.0
RAY_DEFAULT_RECONNECT_S = 60.0

Severity = Literal["ok", "info", "warning", "critical"]

FT_FIX = ("back the GCS with Redis: `RAY_REDIS_ADDRESS=<host:port> ray start --head ...` (a highly available Redis; "
          "`--redis-password` if it has one; `RAY_external_storage_namespace=<cluster>` when clusters share it), or "
          "with RocksDB: `RAY_gcs_storage=rocksdb RAY_gcs_storage_path=<a directory on a persistent volume>`; "
          "KubeRay: `spec.gcsFaultToleranceOptions` on the RayCluster. Restart the head with the same auth token, "
          "and set RAY_gcs_rpc_server_reconnect_timeout_s=300 (or more) on every worker")
WAIT_FIX = (f"set RAY_gcs_rpc_server_reconnect_timeout_s={int(MIN_RECONNECT_S)} (or more; KubeRay uses 600) in the "
            "environment of `ray start` on every worker node")
STATE_FIX = ("state.url: a PostgreSQL database every node reaches (postgresql://user@host:port/db); with it `up` on a "
             "fresh cluster restores the gateway (README: Surviving the head node)")


class WorkerWait(msgspec.Struct, frozen=True, kw_only=True):
    node: str                        # its label (address, short id)
    timeout_s: float | None = None   # RAY_gcs_rpc_server_reconnect_timeout_s there; None: Ray's default


class GcsFacts(msgspec.Struct, frozen=True, kw_only=True):
    nodes: int                                   # alive nodes, the head included
    storage: str | None = None                   # memory, redis, rocksdb; None: could not be read
    redis_address: str | None = None             # the head's RAY_REDIS_ADDRESS
    redis_error: str | None = None               # why that Redis did not answer a PING from the head; None: it did
    storage_namespace: str | None = None         # the head's RAY_external_storage_namespace
    workers: list[WorkerWait] = []               # the worker nodes that answered
    state_url: str | None = None                 # the gateway's state.url (display form)
    state_local: bool = False                    # SQLite or a directory: a file on one machine
    state_on_head: bool | None = None            # the supervisor (which opens it) runs on the head; None: unknown
    state_shared: bool = False                   # several nodes see the same files (a mounted shared directory)


class GcsFinding(msgspec.Struct, frozen=True, kw_only=True):
    severity: Severity
    subject: str
    problem: str
    fix: str | None = None

    def recommendation(self) -> Recommendation | None:
        """As the self-check reports it (nothing for `ok` and `info`)."""
        if self.severity not in ("warning", "critical"):
            return None
        return Recommendation(severity=self.severity, capability="*", provider=None, problem=self.problem,
                              evidence=self.subject, fix=self.fix or "")


def with_shared_store(facts: GcsFacts, shared: SharedStoreReport | None) -> GcsFacts:
    """The facts, knowing whether several nodes see the same state files
    (actors/ops/shared_store.py): a directory they all mount is not a file on one machine."""
    if shared is None:
        return facts
    several = shared.shared and not shared.pinned and len(shared.nodes) > 1
    return msgspec.structs.replace(facts, state_shared=several)


def state_is_local(state_url: str) -> bool:
    """SQLite or a state directory: a file on the machine that opens it."""
    return "://" not in state_url or state_url.startswith("sqlite:")


def gcs_findings(facts: GcsFacts) -> list[GcsFinding]:
    """Pure: whether this cluster survives its head's loss, and what to do if not."""
    out: list[GcsFinding] = []
    multi = facts.nodes > 1
    if facts.storage is None:
        out.append(GcsFinding(severity="info", subject="GCS storage",
                              problem="could not read how the head keeps the GCS (Ray did not say)"))
    elif facts.storage == "memory":
        if multi:
            out.append(GcsFinding(
                severity="warning", subject="GCS storage: memory",
                problem=f"the GCS is not fault tolerant: if the head node dies, every gateway actor on the "
                        f"{facts.nodes} nodes goes with it and an operator must start a new cluster and run `up`",
                fix=FT_FIX))
        else:
            out.append(GcsFinding(severity="info", subject="GCS storage: memory",
                                  problem="a single-node cluster: the head's loss is the cluster's loss"))
    else:
        where = f" at {facts.redis_address}" if facts.redis_address else ""
        ns = f", namespace {facts.storage_namespace}" if facts.storage_namespace else ""
        out.append(GcsFinding(severity="ok", subject=f"GCS storage: {facts.storage}{where}{ns}",
                              problem="the GCS is fault tolerant: the head can be restarted without losing the "
                                      "cluster"))
        if facts.storage == "redis" and facts.redis_error is not None:
            out.append(redis_down(facts.redis_address or "?", facts.redis_error))
        if multi:
            out += _worker_waits(facts.workers)
    if facts.state_local and multi and not facts.state_shared:
        on_head = facts.state_on_head
        out.append(GcsFinding(
            severity="critical" if on_head or on_head is None else "warning",
            subject=f"state.url {facts.state_url}",
            problem=("the state store is a file on the head node of a multi-node cluster: the head's loss loses "
                     "queued requests, delivery journals, spend and idempotency keys" if on_head else
                     "the state store is a file on one machine of a multi-node cluster (the head's, unless placement "
                     "keeps the supervisor off it): that machine's loss loses queued requests, journals and keys"),
            fix=STATE_FIX))
    return out


def _worker_waits(workers: Sequence[WorkerWait]) -> list[GcsFinding]:
    short = [w for w in workers if (w.timeout_s if w.timeout_s is not None else RAY_DEFAULT_RECONNECT_S)
             < MIN_RECONNECT_S]
    if not short:
        return [GcsFinding(severity="ok", subject="worker nodes' GCS reconnect timeout",
                           problem=f"every worker waits {int(MIN_RECONNECT_S)} s or more for a head that is down")]
    listed = ", ".join(f"{w.node} ({'default ' if w.timeout_s is None else ''}"
                       f"{w.timeout_s if w.timeout_s is not None else RAY_DEFAULT_RECONNECT_S:g} s)" for w in short)
    return [GcsFinding(
        severity="warning", subject="worker nodes' GCS reconnect timeout",
        problem=f"{len(short)} worker node(s) give up on a head that is down longer than their timeout, taking "
                f"their gateway actors with them: {listed}", fix=WAIT_FIX)]


def redis_down(address: str, error: str) -> GcsFinding:
    return GcsFinding(
        severity="critical", subject=f"GCS Redis {address}",
        problem=f"the Redis that keeps the GCS does not answer ({error}): a head that restarts cannot recover the "
                "cluster, and a running GCS exits once its grace period ends",
        fix="start that Redis again (a highly available one in production), or correct RAY_REDIS_ADDRESS")


def local_redis_findings(env: dict[str, str]) -> list[GcsFinding]:
    """Without a cluster (doctor run on the head's machine): a RAY_REDIS_ADDRESS
    in this environment is the Redis a head started here uses."""
    address = env.get("RAY_REDIS_ADDRESS")
    if not address:
        return []
    error = ping_redis(address, env.get("RAY_REDIS_PASSWORD") or None)
    if error is not None:
        return [redis_down(address, error)]
    return [GcsFinding(severity="ok", subject=f"GCS Redis {address}", problem="answers PING")]


def ping_redis(address: str, password: str | None = None, timeout_s: float = 2.0) -> str | None:
    """PINGs a Redis (RESP over TCP); None when it answers, else why not."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return f"not a host:port address: {address!r}"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            if password:
                s.sendall(f"*2\r\n$4\r\nAUTH\r\n${len(password.encode())}\r\n{password}\r\n".encode())
                if not s.recv(256).startswith(b"+OK"):
                    return "it refused the password"
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            answer = s.recv(256)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    if answer.startswith(b"+PONG"):
        return None
    return f"unexpected answer {answer[:60]!r}"


# --- from a connected cluster ---------------------------------------------------------------------

def _head_env() -> dict[str, str | None]:
    """On the head (a pinned task): how its GCS is kept, and whether its Redis answers from there."""
    address = os.environ.get("RAY_REDIS_ADDRESS")
    return {"redis_address": address, "namespace": os.environ.get("RAY_external_storage_namespace"),
            "redis_error": ping_redis(address, os.environ.get("RAY_REDIS_PASSWORD") or None) if address else None}


def _reconnect_timeout() -> str | None:
    return os.environ.get("RAY_gcs_rpc_server_reconnect_timeout_s")


async def gather_facts(state_url: str | None, supervisor_node: str | None = None,
                       timeout_s: float = 10.0) -> GcsFacts:
    """From the cluster this process is connected to (Ray). `supervisor_node`:
    the node id of the gateway's supervisor, when known."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from actors.ops.reach import alive_nodes

    nodes = await asyncio.to_thread(alive_nodes)
    storage = await asyncio.to_thread(_storage_tag)

    def pinned(fn: object, node_id: str) -> object:
        task = ray.remote(num_cpus=0, max_retries=0)(fn)
        return task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()

    head = next((n for n in nodes if n.is_head), None)
    workers = [n for n in nodes if not n.is_head]
    head_env: dict[str, str | None] = {}
    waits: list[WorkerWait] = []
    refs = ([pinned(_head_env, head.node_id)] if head is not None else []) + [
        pinned(_reconnect_timeout, w.node_id) for w in workers]
    answers = await asyncio.gather(*(asyncio.wait_for(asyncio.wrap_future(r.future()), timeout_s)  # type: ignore[attr-defined]
                                     for r in refs), return_exceptions=True)
    if head is not None:
        head_env, answers = (answers[0] if isinstance(answers[0], dict) else {}), answers[1:]
    for w, answer in zip(workers, answers, strict=True):
        if isinstance(answer, BaseException):
            continue  # a worker that does not answer says nothing of its timeout
        waits.append(WorkerWait(node=w.label, timeout_s=_float(answer)))
    local = state_url is not None and state_is_local(state_url)
    on_head = None if supervisor_node is None or head is None else supervisor_node == head.node_id
    return GcsFacts(nodes=len(nodes), storage=storage, redis_address=head_env.get("redis_address"),
                    redis_error=head_env.get("redis_error"), storage_namespace=head_env.get("namespace"),
                    workers=waits, state_url=state_url, state_local=local, state_on_head=on_head)


def _storage_tag() -> str | None:
    """memory, redis or rocksdb: what the head records at its start (a key of Ray's usage stats, written
    whether they are sent or not; private to Ray, so read defensively)."""
    try:
        from ray.experimental.internal_kv import _internal_kv_get

        value = _internal_kv_get("extra_usage_tag_gcs_storage", namespace="usage_stats")
    except Exception:  # noqa: BLE001 - a Ray that does not keep it: unknown
        return None
    return value.decode() if isinstance(value, bytes) else value


def _float(text: object) -> float | None:
    try:
        return float(text) if text not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
