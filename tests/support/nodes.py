"""A Ray cluster of several nodes on this one machine whose nodes do not
share a disk where it matters: each node runs in a mount namespace of its
own, and may have empty tmpfs mounted over chosen directories (the gateway's
state directory), so a file one node writes there is invisible to the others,
as on two machines.

    with RayNodes(head_resources={"head": 100}) as cluster:       # starts the head
        b = cluster.add_node("b", resources={"providers": 100}, private_dirs=[state_dir])
        node_id = cluster.run_driver('''
            @ray.remote(resources={"providers": 1})
            def where(): return ray.get_runtime_context().get_node_id()
            result(ray.get(where.remote()))
        ''')                                                      # == b.node_id
        cluster.cli("outbox", "list", on="b")                      # aicmo-gateway, as a user on machine b
        cluster.remove_node(b)                                     # the machine goes away

Every node is a `ray start --block` of its own (not ray.cluster_utils.Cluster,
whose nodes are children of one Python process and share its view of files):

- started through `unshare --mount --propagation private`, so mounts made for
  it stay its own; this needs root (CAP_SYS_ADMIN), as CI has. Without it,
  nodes that need no private directory still run, without a namespace;
- in a process group and session of its own, stopped by SIGKILLing that group
  and every process left in its mount namespace: `ray stop` would stop every
  Ray cluster on the machine, other engineers' and the test session's;
- on ports nobody else uses: every port Ray would otherwise take from a fixed
  default (GCS 6379, client server 10001, dashboard 8265, agent 52365, ...) is
  a free one picked here; worker ports are left to the kernel;
- with token authentication as on a user's machine: a HOME of this cluster's
  own holds `.ray/auth_token` (never the real ~/.ray/auth_token), and
  `RAY_AUTH_MODE` is not set, so `ray start --head` turns token auth on
  because it finds the token, as Ray 2.60 does (`auth="off"`: no token, so
  Ray starts with auth off; `auth="disabled"`: RAY_AUTH_MODE=disabled on the
  nodes and in `env`, a token in HOME all the same). `env`, what a user's
  shell holds, has no RAY_AUTH_MODE unless disabled: the gateway's CLI and
  client must find the token themselves. Plain Ray drivers with an explicit
  address (`run_driver`, the GCS queries here) set RAY_AUTH_MODE=token, as
  Ray requires of them;
- with every Ray file under one temporary directory (--temp-dir, RAY_TMPDIR),
  so it never writes /tmp/ray/ray_current_cluster; `ray.init("auto")` and
  `aicmo-gateway` without an address, given `env`, find this cluster's own.

All nodes advertise the machine's IP (Ray turns 127.0.0.1 into it), so Ray
attaches every driver to the head, whichever namespace the driver runs in.

The test process never joins this cluster (pytest's session already has its
own `ray.init`, and a process joins one cluster only): drivers are
subprocesses. `run_driver(code)` runs Python with `ray.init()` done and a
`result(value)` function that hands JSON back; `env` is what any other
subprocess (`aicmo-gateway`, `ray job submit`) needs to reach the cluster.

Ray marks a node dead after its health checks fail; the head is started with
checks every second and 5 failures allowed (Ray's defaults are 3 s and 5), so
a removed node is declared dead about 5 s after it goes instead of 15.

The head node may die, too (docs/head-node.md has what Ray does then):

    cluster = RayNodes(head_cpus=0, gcs=GcsStorage.redis(redis.address, namespace="t1"),
                       gcs_reconnect_timeout_s=120).start()
    w = cluster.add_node("w", resources={"w": 100}, own_ip=True)   # w.ip: 10.200.X.Y
    cluster.kill_head()          # SIGKILL to the head's processes; the workers keep running
    cluster.restart_head()       # same GCS port, token and storage; a new head node id
    wait_for(lambda: ..., timeout_s=60, what="the actors answering again")

- `gcs`: where the GCS keeps the cluster's metadata (Redis, or RocksDB in a
  directory); without it a restarted head is a new cluster and the worker
  nodes of the old one exit when they reach it.
- `gcs_reconnect_timeout_s`: how long every raylet and driver waits for a GCS
  that went away before it exits (Ray's default is 60 s).
- `own_ip`: the node runs in a network namespace of its own
  (tests/support/netns.py) with an address on a private bridge: its ports are
  its own (a Serve proxy on the port the head's uses) and a driver run `on` it
  attaches to it, not to the head, so the driver outlives the head. Its
  processes reach the head at the bridge's address (`address_from(name)`);
  PostgreSQL and other servers its actors use must listen on an address it
  can reach (the machine's own, not 127.0.0.1).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.netns import NetworkNamespace, PrivateNetwork

__all__ = ["DriverError", "GcsStorage", "Node", "NodeError", "RayNodes", "free_ports", "unavailable_reason",
           "wait_for"]

BIN = Path(sys.executable).parent
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_HOST = "127.0.0.1"
_READY = "Ray runtime started."


class NodeError(RuntimeError):
    """A node could not be started or stopped; the message holds the tail of its log."""


class DriverError(RuntimeError):
    """A driver script failed or gave no result; the message holds its output."""

    def __init__(self, message: str, stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr


def unavailable_reason(private_dirs: bool = True) -> str | None:
    """Why RayNodes cannot run here, or None when it can. Without
    `private_dirs` (no node will have directories of its own), only Ray is
    needed: nodes then run without a namespace, stopped by process group."""
    if not (BIN / "ray").exists():
        return f"no `ray` next to {sys.executable} (pip install -e . in the project's venv)"
    if not sys.platform.startswith("linux"):
        return "Ray nodes with private directories need Linux mount namespaces"
    if private_dirs:
        return _namespace_problem()
    return None


@functools.cache
def _namespace_problem() -> str | None:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "unshare and nsenter are not installed (Debian: apt-get install util-linux)"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return ("cannot create a mount namespace (unshare --mount: "
                f"{probe.stderr.strip() or probe.returncode}): run as root; in a container, with CAP_SYS_ADMIN "
                "(docker run --cap-add SYS_ADMIN, or --privileged)")
    return None


@dataclass(frozen=True)
class GcsStorage:
    """Where the head's GCS keeps the cluster's metadata so that a head
    started again finds it: GCS fault tolerance. Without one (Ray's
    default) the metadata lives in the GCS's memory and a restarted head is
    a new cluster: worker nodes of the old one exit, every actor is gone.

    - `GcsStorage.redis(address, namespace=...)`: an external Redis
      (`RAY_REDIS_ADDRESS`; `RAY_external_storage_namespace` keeps clusters
      that share one Redis apart; `--redis-password` when it has one);
    - `GcsStorage.rocksdb(path)`: RocksDB embedded in the GCS, in a directory
      the head keeps (`RAY_gcs_storage=rocksdb`, `RAY_gcs_storage_path`;
      alpha in Ray 2.60)."""

    kind: str  # "redis" or "rocksdb"
    redis_address: str = ""
    redis_password: str | None = field(default=None, repr=False)
    namespace: str = ""
    path: Path | None = None

    @classmethod
    def redis(cls, address: str, *, namespace: str, password: str | None = None) -> GcsStorage:
        if not namespace:
            raise ValueError("a namespace keeps clusters sharing one Redis apart: give one")
        return cls(kind="redis", redis_address=address, redis_password=password, namespace=namespace)

    @classmethod
    def rocksdb(cls, path: str | Path) -> GcsStorage:
        return cls(kind="rocksdb", path=Path(path))

    def head_env(self) -> dict[str, str]:
        if self.kind == "redis":
            return {"RAY_REDIS_ADDRESS": self.redis_address, "RAY_external_storage_namespace": self.namespace}
        return {"RAY_gcs_storage": "rocksdb", "RAY_gcs_storage_path": str(self.path)}

    def head_args(self) -> list[str]:
        return ["--redis-password", self.redis_password] if self.kind == "redis" and self.redis_password else []


@dataclass
class Node:
    """One node of the cluster. `resources` are the custom ones it was given
    (what placement asks for), plus CPU."""

    name: str
    node_id: str
    resources: dict[str, float]
    private_dirs: tuple[Path, ...]
    temp_dir: Path
    log_file: Path
    is_head: bool
    process: subprocess.Popen[bytes] = field(repr=False)
    mount_ns: str = field(repr=False, default="")
    metrics_port: int = 0  # where this node's Ray serves Prometheus metrics (`--metrics-export-port`)
    netns: NetworkNamespace | None = field(repr=False, default=None)  # its own network (add_node(own_ip=True))
    # Every process of it is gone (RayNodes._kill finished): never signalled or swept again. Its process
    # group id and mount namespace id are free for reuse by then, by another node's processes.
    gone: bool = field(repr=False, default=False)

    @property
    def ip(self) -> str | None:
        """Its own address when it has a network of its own; None: the machine's, as the head's."""
        return self.netns.ip if self.netns else None

    @property
    def alive(self) -> bool:
        """Its `ray start` still runs (not: Ray still counts it; see RayNodes.alive_node_ids)."""
        return self.process.poll() is None

    def processes(self) -> list[int]:
        """The node's live processes (everything in its mount namespace, else
        in its process group): none once it is removed."""
        if self.mount_ns:
            return _live_processes(lambda pid: _mount_ns(pid) == self.mount_ns)
        return _live_processes(lambda pid: _pgid(pid) == self.process.pid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# Clusters not shut down by their owner (an interrupted run) are shut down when
# the interpreter exits, so no Ray process outlives the test session.
_live: set[RayNodes] = set()


@atexit.register
def _shutdown_leftovers() -> None:
    for cluster in list(_live):
        with contextlib.suppress(Exception):
            cluster.shutdown()


class RayNodes:
    """A head node and any number of worker nodes, each in a mount namespace
    of its own. Not thread-safe; share one per test module (a node takes
    several seconds to start)."""

    def __init__(
        self,
        *,
        head_cpus: float = 1,
        head_resources: dict[str, float] | None = None,
        head_private_dirs: Iterable[str | Path] = (),
        dashboard: bool = False,
        object_store_mb: int = 128,
        env: dict[str, str] | None = None,
        health_check_period_ms: int = 1000,
        health_check_failure_threshold: int = 5,
        gcs: GcsStorage | None = None,
        gcs_reconnect_timeout_s: float | None = None,
        auth: str = "token",
        head_env: dict[str, str] | None = None,
    ):
        if auth not in ("token", "off", "disabled"):
            raise ValueError(f"auth must be token, off or disabled, not {auth!r}")
        self.auth = auth
        self.head_cpus = head_cpus
        self.head_resources = dict(head_resources or {})
        self.head_private_dirs = tuple(Path(d) for d in head_private_dirs)
        self.dashboard = dashboard
        self.object_store_mb = object_store_mb
        self.extra_env = dict(env or {})
        self.head_env = dict(head_env or {})   # for the head's `ray start` alone, as `VAR=value ray start --head`
        self.health_env = {"RAY_health_check_period_ms": str(health_check_period_ms),
                           "RAY_health_check_failure_threshold": str(health_check_failure_threshold)}
        # Short: Ray's Unix socket paths (under the temp dir) must fit in 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="aicmo-nodes-", dir="/tmp"))
        # The cluster's user's HOME: `ray start`, the CLI and drivers find the token in it as on a machine.
        self.home = self.root / "home"
        self.token_file = self.home / ".ray" / "auth_token"
        self.token_file.parent.mkdir(parents=True)
        if auth != "off":  # the file a user has (`make demo`'s local Ray writes the same one)
            _write_token(self.token_file, self.home)
        self.gcs = gcs
        # Every node's raylet (and every driver) waits this long for a GCS that went away before it
        # gives up and exits (Ray's RAY_gcs_rpc_server_reconnect_timeout_s, 60 s by default).
        self.reconnect_env = ({"RAY_gcs_rpc_server_reconnect_timeout_s": str(int(gcs_reconnect_timeout_s))}
                              if gcs_reconnect_timeout_s is not None else {})
        self.nodes: dict[str, Node] = {}
        self.removed: dict[str, Node] = {}
        self.gcs_port = 0
        self.dashboard_port = 0
        self._client_port = 0
        self._head_starts = 0
        self._network: PrivateNetwork | None = None
        self._closed = False

    # --- addresses and environment ------------------------------------------------
    @property
    def address(self) -> str:
        """The GCS address (host:port), what RAY_ADDRESS and `--address` take."""
        return f"{_HOST}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str | None:
        """The head's dashboard (`ray job submit --address`), when started with dashboard=True."""
        return f"http://{_HOST}:{self.dashboard_port}" if self.dashboard else None

    @property
    def head(self) -> Node:
        if "head" not in self.nodes:
            raise NodeError("the head is down (kill_head()); restart_head() brings it back")
        return self.nodes["head"]

    @property
    def head_down(self) -> bool:
        return self._head_starts > 0 and "head" not in self.nodes

    def node(self, name: str) -> Node:
        return self.nodes[name]

    @property
    def env(self) -> dict[str, str]:
        """The environment a subprocess needs to reach this cluster: a driver, `aicmo-gateway`, `ray job submit`."""
        return {**inherited_env(), **self._ray_env(), "RAY_ADDRESS": self.address, **self.reconnect_env,
                **self.extra_env}

    def _ray_env(self) -> dict[str, str]:
        python_path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.home),
            **({"RAY_AUTH_MODE": "disabled"} if self.auth == "disabled" else {}),
            "RAY_TMPDIR": str(self.root),
            # Workers import the gateway and tests.* from the project (they start in the node's cwd).
            "PYTHONPATH": python_path,
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def _plain_driver_env(self) -> dict[str, str]:
        """`env` for a plain Ray driver: one that names the address (RAY_ADDRESS) sends
        the token only with RAY_AUTH_MODE=token (Ray 2.60), which such a user must set."""
        return {**self.env, **({"RAY_AUTH_MODE": "token"} if self.auth == "token" else {})}

    # --- lifecycle ------------------------------------------------------------------
    def start(self, timeout_s: float = 120) -> RayNodes:
        """Start the head node."""
        if self._closed:
            raise NodeError("this cluster was shut down; create a new RayNodes")
        if "head" in self.nodes or self._head_starts:
            return self
        reason = unavailable_reason(private_dirs=bool(self.head_private_dirs))
        if reason:
            raise NodeError(reason)
        _live.add(self)
        self.gcs_port, self.dashboard_port, self._client_port = free_ports(3)
        try:
            self._start_head(timeout_s)
        except BaseException:
            self.shutdown()
            raise
        return self

    def kill_head(self) -> Node:
        """SIGKILL every process of the head node at once (its process group
        and its mount namespace), as when the head's machine goes away. The
        worker nodes keep running; what they and the cluster's actors do next
        is Ray's business (GCS fault tolerance or not). Returns the dead head."""
        head = self.head
        self._kill(head)
        del self.nodes["head"]
        self.removed[f"head#{self._head_starts}"] = head
        return head

    def restart_head(self, timeout_s: float = 120) -> Node:
        """Start the head again after kill_head(): the same GCS port (the
        address every node and driver knows), the same token, the same GCS
        storage. Returns once its own raylet is alive; whether the worker
        nodes are (they re-register with a fault-tolerant GCS), ask
        wait_for_nodes or alive_node_ids."""
        if not self.head_down:
            raise NodeError("restart_head() follows kill_head()")
        self._start_head(timeout_s)
        return self.head

    def _start_head(self, timeout_s: float) -> None:
        self._head_starts += 1
        self._start_node(
            "head", ["--head", f"--port={self.gcs_port}", f"--ray-client-server-port={self._client_port}",
                     f"--include-dashboard={'true' if self.dashboard else 'false'}",
                     *([f"--dashboard-port={self.dashboard_port}", f"--dashboard-host={_HOST}"]
                       if self.dashboard else []),
                     *(self.gcs.head_args() if self.gcs else [])],
            num_cpus=self.head_cpus, resources=self.head_resources, private_dirs=self.head_private_dirs,
            env={**self.health_env, **self.head_env, **(self.gcs.head_env() if self.gcs else {})}, timeout_s=timeout_s,
            log_name=f"head-{self._head_starts}" if self._head_starts > 1 else "head")
        if self.dashboard:
            _wait_for_http(f"{self.dashboard_url}/api/version", self.head, timeout_s)

    def add_node(self, name: str, *, num_cpus: float = 1, resources: dict[str, float] | None = None,
                 private_dirs: Iterable[str | Path] = (), env: dict[str, str] | None = None,
                 own_ip: bool = False, timeout_s: float = 120) -> Node:
        """Start a worker node. `resources`: custom resources for placement
        (the config's `placement` asks for them). `private_dirs`: directories
        this node sees as empty tmpfs of its own (created here if missing).
        `env`: extra environment for the node's Ray processes and workers.
        `own_ip`: the node runs in a network namespace of its own with an
        address of its own (tests/support/netns.py; `node.ip`): its ports
        are its own (a Serve proxy on the same port as the head's), and a
        driver run `on` it attaches to it, not to the head."""
        if "head" not in self.nodes:
            raise NodeError("start() the head first")
        if name in self.nodes or name in self.removed:
            raise ValueError(f"there is already a node named {name!r}")
        netns = None
        if own_ip:
            from tests.support.netns import PrivateNetwork

            if self._network is None:
                self._network = PrivateNetwork()
            netns = self._network.add(name)
        try:
            gcs_address = f"{netns.gateway}:{self.gcs_port}" if netns else self.address
            return self._start_node(name, [f"--address={gcs_address}",
                                           *([f"--node-ip-address={netns.ip}"] if netns else [])],
                                    num_cpus=num_cpus, resources=dict(resources or {}),
                                    private_dirs=tuple(Path(d) for d in private_dirs), env=dict(env or {}),
                                    timeout_s=timeout_s, netns=netns)
        except BaseException:
            if netns and self._network:
                self._network.remove(netns)
            raise

    def remove_node(self, node: Node | str, *, wait_dead_s: float | None = 60) -> None:
        """SIGKILL every process of the node at once, as when a machine goes
        away, then (unless wait_dead_s is None) wait until Ray counts it dead."""
        node = self.nodes[node] if isinstance(node, str) else node
        if node.is_head:
            raise ValueError("removing the head ends the cluster: use shutdown(), or kill_head()")
        self._kill(node)
        self._release_network(node)
        del self.nodes[node.name]
        self.removed[node.name] = node
        if wait_dead_s is not None:
            self.wait_for_nodes(dead=[node.node_id], timeout_s=wait_dead_s)

    def shutdown(self, graceful_s: float = 0) -> None:
        """Stop every node and remove the cluster's directory: SIGKILL to
        every process, as kill_head() and remove_node() do (with
        `graceful_s`, SIGTERM first and that long to exit). Safe to call
        twice. (Given SIGTERM, the head's GCS and `ray start` linger for 15 s
        and more while they wait on each other, so a grace of a few seconds
        was spent whole by every cluster; a throwaway test cluster has
        nothing to save.)"""
        try:
            everything = [*self.nodes.values(), *self.removed.values()]
            if graceful_s > 0:
                for node in everything:
                    if not node.gone:
                        _signal_group(node.process, signal.SIGTERM)
                deadline = time.monotonic() + graceful_s
                for node in everything:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        node.process.wait(max(0.0, deadline - time.monotonic()))
            for node in everything:
                if not node.gone:
                    self._kill(node)
                self._release_network(node)
        finally:
            if self._network is not None:
                self._network.close()
            self.nodes.clear()
            _live.discard(self)
            self._closed = True
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RayNodes:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # --- asking the cluster --------------------------------------------------------
    def alive_node_ids(self) -> set[str]:
        """The nodes Ray's GCS counts alive right now."""
        return set(self._gcs_nodes(wait={}, timeout_s=30)["alive"])

    def wait_for_nodes(self, *, alive: Iterable[str] = (), dead: Iterable[str] = (), timeout_s: float = 60) -> None:
        """Wait until the GCS counts every node id in `alive` alive and every one in `dead` dead."""
        self._gcs_nodes(wait={"alive": list(alive), "dead": list(dead)}, timeout_s=timeout_s)

    def run_driver(self, code: str, *, args: Any = None, namespace: str = "aicmo-nodes-test", on: str | None = None,
                   env: dict[str, str] | None = None, timeout_s: float = 180) -> Any:
        """Run `code` as a Ray driver on this cluster, in a subprocess. The
        code runs after `ray.init(namespace=namespace)`; `ARGS` holds `args`
        (through JSON) and `result(value)` hands a JSON-able value back, which
        this returns. Raises DriverError when the script fails or gives no result.
        `on`: a node's name, to see the files that node sees (its private
        directories) as a user on that machine would; by default the host's
        view, which is the head's unless it has private directories. Ray
        attaches a driver to a raylet of the driver's own IP, the head's if
        several share it: a driver run `on` a node with an address of its own
        (add_node(own_ip=True)) attaches to that node and keeps running when
        the head goes away; any other driver attaches to the head."""
        scratch = Path(tempfile.mkdtemp(prefix="driver-", dir=self.root))
        try:
            (scratch / "args.json").write_text(json.dumps(args))
            script = scratch / "driver.py"
            script.write_text(_DRIVER_PRELUDE + textwrap.dedent(code))
            prefix, view_env = self._view(on)
            run_env = {**self._plain_driver_env(), **view_env, **(env or {}), "AICMO_DRIVER_DIR": str(scratch),
                       "AICMO_DRIVER_NAMESPACE": namespace}
            try:
                done = subprocess.run([*prefix, sys.executable, str(script)], capture_output=True, text=True, env=run_env,
                                      cwd=PROJECT_ROOT, timeout=timeout_s, start_new_session=True)
            except subprocess.TimeoutExpired as exc:
                raise DriverError(f"driver did not finish in {timeout_s:.0f} s", _text(exc.stdout), _text(exc.stderr)) from None
            out_file = scratch / "result.json"
            if done.returncode != 0 or not out_file.exists():
                why = f"exit {done.returncode}" if done.returncode else "it never called result()"
                raise DriverError(f"driver failed ({why}):\n{done.stderr[-4000:]}", done.stdout, done.stderr)
            return json.loads(out_file.read_text())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def cli(self, *args: str, on: str | None = None, env: dict[str, str] | None = None,
            timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
        """`aicmo-gateway ARGS` against this cluster (RAY_ADDRESS and the token
        set); `on` as for run_driver."""
        prefix, view_env = self._view(on)
        return subprocess.run([*prefix, str(BIN / "aicmo-gateway"), *args], capture_output=True, text=True,
                              env={**self.env, **view_env, **(env or {})}, cwd=PROJECT_ROOT, timeout=timeout_s)

    def popen(self, args: list[str], *, on: str | None = None, env: dict[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[Any]:
        """Start any command as a process of the named node's machine (its
        files, its network), in a session of its own, with the cluster's
        environment: a long-running driver or client. The caller stops it.
        On a node with its own address, AICMO_NODE_IP holds it: a driver
        passes it to `ray.init(_node_ip_address=...)` to attach to that node."""
        prefix, view_env = self._view(on)
        return subprocess.Popen([*prefix, *args], env={**self.env, **view_env, **(env or {})}, cwd=PROJECT_ROOT,
                                start_new_session=True, **kwargs)

    def address_from(self, on: str | None) -> str:
        """The GCS address as seen from the named node's machine: from a
        network namespace of its own, the host's address on its bridge."""
        node = self.nodes[on] if on is not None else None
        return f"{node.netns.gateway}:{self.gcs_port}" if node and node.netns else self.address

    def _view(self, on: str | None) -> tuple[list[str], dict[str, str]]:
        """A command prefix that runs in the named node's mount namespace (and
        network namespace, when it has one), and the environment it needs there."""
        if on is None:
            return [], {}
        node = self.nodes[on]
        if not node.mount_ns:
            return [], {}  # no namespace: it sees what the host sees
        prefix = ["nsenter", f"--mount=/proc/{node.process.pid}/ns/mnt"]
        if not node.netns:
            return [*prefix, "--"], {}
        prefix.append(f"--net={node.netns.path}")
        # Ray attaches a driver to a raylet of its IP, preferring the head's when several share one
        # (as every node but this one does here): a driver on this node names its address.
        return [*prefix, "--"], {"RAY_ADDRESS": self.address_from(on), "AICMO_NODE_IP": node.netns.ip}

    # --- internals --------------------------------------------------------------------
    def _start_node(self, name: str, role_args: list[str], *, num_cpus: float, resources: dict[str, float],
                    private_dirs: tuple[Path, ...], env: dict[str, str], timeout_s: float,
                    netns: NetworkNamespace | None = None, log_name: str | None = None) -> Node:
        if (private_dirs or netns) and _namespace_problem():
            raise NodeError(f"node {name!r} needs a mount namespace: {_namespace_problem()}")
        # The head's is RAY_TMPDIR/ray, Ray's default temp dir for every process given `env`: there
        # `ray start --head` writes ray_current_cluster, so `ray.init("auto")` and `aicmo-gateway`
        # without an address find this cluster, as on the head machine (and never /tmp/ray's).
        temp_dir = self.root / ("ray" if name == "head" else name)
        temp_dir.mkdir(exist_ok=True)
        for d in private_dirs:
            d.mkdir(parents=True, exist_ok=True)  # a mount point must exist
        log_file = self.root / f"{log_name or name}.log"
        # Fixed defaults collide with other clusters on this machine (the agent's 52365 above all:
        # `ray job submit` then finds "No available agent"); worker ports are left to the kernel
        # (0 and 0), which no pre-picked range can beat for freedom from races.
        node_manager, object_manager, agent_http, agent_grpc, runtime_env, metrics = free_ports(6)
        ray_args = [
            str(BIN / "ray"), "start", "--block", *role_args, f"--node-name={name}",
            f"--num-cpus={num_cpus}", f"--resources={json.dumps(resources)}", f"--temp-dir={temp_dir}",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
            f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
            f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
            "--min-worker-port=0", "--max-worker-port=0", "--disable-usage-stats",
        ]
        command = ray_args
        if not _namespace_problem():
            # Every node gets a namespace when it can, for the sweep in _kill. The mounts happen
            # inside it, before Ray starts; `exec` keeps one process (the group leader) from
            # unshare to `ray start`.
            mount_script = ('set -e; while [ "$1" != -- ]; do mount -t tmpfs -o mode=0700 tmpfs "$1"; shift; done; '
                            'shift; exec "$@"')
            command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", mount_script, "sh",
                       *map(str, private_dirs), "--", *ray_args]
            if netns:
                command = [*netns.enter(), *command]  # nsenter execs: still one process
        # A worker node's `ray start --address` does not turn token mode on by itself (only the head's does,
        # on finding a token): Ray asks RAY_AUTH_MODE=token of whoever adds a node to a token cluster.
        joins = {"RAY_AUTH_MODE": "token"} if name != "head" and self.auth == "token" else {}
        node_env = {**inherited_env(), **self._ray_env(), **joins, **self.reconnect_env, **self.extra_env, **env}
        with open(log_file, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=node_env, cwd=PROJECT_ROOT, start_new_session=True)
        node = Node(name=name, node_id="", resources={"CPU": float(num_cpus), **resources},
                    private_dirs=private_dirs, temp_dir=temp_dir, log_file=log_file, is_head=name == "head",
                    process=process, metrics_port=metrics, netns=netns)
        self.nodes[name] = node
        try:
            if command is not ray_args:
                node.mount_ns = _wait_for_namespace(process)
            _wait_for_log(node, _READY, timeout_s)
            node.node_id = _wait_for_raylet_node_id(node, timeout_s=30)
            self.wait_for_nodes(alive=[node.node_id], timeout_s=timeout_s)
        except BaseException as exc:
            self._kill(node)
            del self.nodes[name]
            if isinstance(exc, NodeError):
                raise
            raise NodeError(f"node {name!r} did not come up: {exc}\n--- {log_file.name} ---\n{node.log_tail()}") from exc
        return node

    def _release_network(self, node: Node) -> None:
        if node.netns is not None and self._network is not None:
            self._network.remove(node.netns)

    def _kill(self, node: Node) -> None:
        """SIGKILL the node's process group and every process still in its
        mount namespace, until none is left. The group alone is not enough
        where there is a namespace to sweep: a process that called setsid(),
        or one forked while the group was being signalled, would survive it."""
        deadline = time.monotonic() + 15
        while True:
            _signal_group(node.process, signal.SIGKILL)
            left = node.processes()
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(1)
            if not left and node.process.poll() is not None:
                node.gone = True
                return
            if time.monotonic() > deadline:
                raise NodeError(f"node {node.name!r}: processes {left} survived SIGKILL")
            time.sleep(0.1)

    def _gcs_nodes(self, *, wait: dict[str, list[str]], timeout_s: float) -> dict[str, list[str]]:
        """Ask the GCS which nodes are alive and dead, from a subprocess (this
        process must not load Ray's token settings: the session's own cluster
        runs in it); with `wait`, poll until that holds."""
        done = subprocess.run([sys.executable, "-c", _GCS_QUERY, self.address, json.dumps(wait), str(timeout_s)],
                              capture_output=True, text=True, env=self._plain_driver_env(), timeout=timeout_s + 30)
        if done.returncode != 0:
            raise NodeError(f"asking the GCS at {self.address} for nodes failed: {done.stderr.strip()[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


_DRIVER_PRELUDE = '''\
import json as _json, logging as _logging, os as _os, pathlib as _pathlib
import ray
ARGS = _json.loads(_pathlib.Path(_os.environ["AICMO_DRIVER_DIR"], "args.json").read_text())
def result(value):
    """Hand `value` (JSON-able) back to the test."""
    _pathlib.Path(_os.environ["AICMO_DRIVER_DIR"], "result.json").write_text(_json.dumps(value))
ray.init(namespace=_os.environ["AICMO_DRIVER_NAMESPACE"], logging_level=_logging.ERROR, log_to_driver=False,
         _node_ip_address=_os.environ.get("AICMO_NODE_IP") or None)
'''

_GCS_QUERY = '''\
import json, sys, time
from ray._raylet import GcsClient
address, wait, timeout_s = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
client = GcsClient(address=address)
deadline = time.monotonic() + timeout_s
while True:
    infos = client.get_all_node_info(timeout=10).values()
    alive = sorted(i.node_id.hex() for i in infos if i.state == 0)
    dead = sorted(i.node_id.hex() for i in infos if i.state != 0)
    if set(wait.get("alive", ())) <= set(alive) and set(wait.get("dead", ())) <= set(dead):
        print(json.dumps({"alive": alive, "dead": dead}))
        break
    if time.monotonic() > deadline:
        sys.exit(f"after {timeout_s:.0f} s: wanted {wait}, GCS says alive {alive}, dead {dead}")
    time.sleep(0.25)
'''


def _write_token(token_file: Path, home: Path) -> None:
    """What `ray get-auth-token --generate` writes to HOME/.ray/auth_token:
    a token from Ray's own generator. Made here, not by running that
    command: the command spends about 2 s of CPU starting Python and
    importing Ray's CLI, once per cluster. (Importing the generator does not
    load Ray's token settings into this process.)"""
    try:
        from ray._private.authentication.authentication_token_generator import generate_new_authentication_token
    except ImportError:  # another Ray version: its own command, as a user runs it
        subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], check=True, capture_output=True,
                       timeout=120, env={**inherited_env(), "HOME": str(home)})
        return
    token_file.write_text(generate_new_authentication_token())


def inherited_env() -> dict[str, str]:
    """This process's environment without Ray's variables: the test session's
    own cluster may have set some (RAY_ADDRESS, a token), and this cluster must
    not depend on them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


# Ports handed out by free_ports in this process. A port in use inside a
# node's own network namespace looks free from here: without this, a port
# picked later (a Serve proxy's) could be one a node with its own IP already
# listens on, and requests to that node would reach the wrong server.
_handed_out: set[int] = set()


def free_ports(n: int) -> list[int]:
    """n distinct free ports, none handed out before by this process: all
    sockets stay bound until the last is picked, so the kernel cannot hand
    out one port twice."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < n:
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((_HOST, 0))
            port = s.getsockname()[1]
            if port not in _handed_out:
                ports.append(port)
        _handed_out.update(ports)
        return ports


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _mount_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _wait_for_namespace(process: subprocess.Popen[bytes], timeout_s: float = 10) -> str:
    """The node's mount namespace, once unshare has entered it (its id differs from ours)."""
    ours = _mount_ns("self")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ns = _mount_ns(process.pid)
        if ns and ns != ours:
            return ns
        if process.poll() is not None:
            raise NodeError(f"unshare exited ({process.returncode}) before the node started")
        time.sleep(0.02)
    raise NodeError("unshare did not enter a new mount namespace")


def _pgid(pid: int | str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def _live_processes(belongs: Any) -> list[int]:
    """Pids of the processes, other than this one, for which `belongs(pid)` holds; zombies
    (exited, only their parent's bookkeeping left) do not count."""
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and belongs(entry):
            try:
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                pids.append(int(entry))
    return pids


def _wait_for_http(url: str, node: Node, timeout_s: float) -> None:
    """Until the URL answers at all (a 401 without the token counts: it is up)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise NodeError(f"the dashboard at {url} did not answer in {timeout_s:.0f} s:\n{node.log_tail()}") from None
            time.sleep(0.3)


def _wait_for_log(node: Node, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if text in node.log_tail(chars=1_000_000):
            return
        if node.process.poll() is not None:
            raise NodeError(f"node {node.name!r}: `ray start` exited ({node.process.returncode}) before it was ready:\n"
                            f"--- {node.log_file.name} ---\n{node.log_tail()}")
        if time.monotonic() > deadline:
            raise NodeError(f"node {node.name!r} was not ready after {timeout_s:.0f} s:\n"
                            f"--- {node.log_file.name} ---\n{node.log_tail()}")
        time.sleep(0.2)


def _wait_for_raylet_node_id(node: Node, timeout_s: float) -> str:
    """The node id, from its raylet's command line (--node_id=...), the raylet
    found among the processes of the node's mount namespace."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in node.processes():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"/raylet"):
                for arg in argv:
                    if arg.startswith(b"--node_id="):
                        return arg.split(b"=", 1)[1].decode()
        time.sleep(0.1)
    raise NodeError(f"node {node.name!r}: no raylet with a --node_id among its processes")


def wait_for(condition: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Poll `condition` until it returns something true (returned), or raise
    TimeoutError naming `what` and the last exception it raised."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - kept for the message
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout_s:.0f} s" + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval_s)


def processes_of(cluster: RayNodes) -> list[int]:
    """Every live process of the cluster's nodes, removed ones included (for tests that check nothing is left)."""
    return [pid for node in [*cluster.nodes.values(), *cluster.removed.values()] for pid in node.processes()]


@contextlib.contextmanager
def ray_nodes(**kwargs: Any) -> Iterator[RayNodes]:
    """`with ray_nodes(...) as cluster:` -- RayNodes(**kwargs), started, shut down after."""
    cluster = RayNodes(**kwargs)
    with cluster:
        yield cluster
