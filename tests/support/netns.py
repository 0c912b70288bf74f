"""Network namespaces with addresses of their own, for Ray nodes on one
machine that must not share an IP address (a Serve proxy per node on the
same port; a driver that attaches to a worker node rather than the head).

    with PrivateNetwork() as net:            # a bridge on the host: 10.200.X.1/24
        ns = net.add("w")                    # a namespace: veth on the bridge, 10.200.X.2/24
        ns.ip, ns.path                       # "10.200.X.2", "/run/netns/aicmo-..."
        subprocess.run([*ns.enter(), "ip", "-br", "addr"])     # run something inside it
        net.remove(ns)

Each namespace has its loopback up, one end of a veth pair with an address on
the subnet, and a default route through the bridge's address: everything
else the host can reach (the head node's address above all, whatever it is
on this machine) it reaches through the host, which delivers packets for its
own addresses without forwarding. Namespaces on one bridge reach each other
directly (a bridge, not routing: the host's ip_forward is left alone).

Only addresses of our own are used: one /24 out of 10.200.0.0/16 per network,
picked under a lock among those no interface on the machine has, so parallel
test sessions get different ones. Every name carries the creating process's
pid; a network whose creator is gone (a test run killed with SIGKILL) is
removed by the next PrivateNetwork created on the machine. Needs root
(CAP_NET_ADMIN) and iproute2; `unavailable_reason()` says when it cannot run.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import ipaddress
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["NetworkError", "NetworkNamespace", "PrivateNetwork", "unavailable_reason"]

_SUPERNET = ipaddress.ip_network("10.200.0.0/16")
_PREFIX = "aicmo"  # namespaces: aicmo-<pid>-<id>-<name>; bridges: aib<pid>x<n>; veths: aiv<8 hex>
_NETNS_DIR = Path("/run/netns")
_LOCK = Path("/tmp/aicmo-netns.lock")


class NetworkError(RuntimeError):
    """A namespace, veth or bridge could not be created or removed; the message holds ip's error."""


@functools.cache
def unavailable_reason() -> str | None:
    """Why private networks cannot be made here, or None when they can."""
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        return "ip (iproute2) and nsenter (util-linux) are needed: apt-get install iproute2 util-linux"
    probe = subprocess.run(["unshare", "--net", "--", "ip", "link", "add", "probe0", "type", "veth", "peer", "name",
                            "probe1"], capture_output=True, text=True)
    if probe.returncode != 0:
        return ("cannot create a network namespace with a veth pair "
                f"({probe.stderr.strip() or probe.returncode}): run as root; in a container, with CAP_NET_ADMIN and "
                "CAP_SYS_ADMIN (docker run --cap-add NET_ADMIN --cap-add SYS_ADMIN, or --privileged)")
    return None


@dataclass(frozen=True)
class NetworkNamespace:
    """One namespace on a PrivateNetwork: `ip` is its address on the subnet."""

    name: str
    ip: str
    gateway: str  # the bridge's address on the host: how the namespace reaches the host
    veth: str  # the host's end, on the bridge

    @property
    def path(self) -> str:
        return str(_NETNS_DIR / self.name)

    def enter(self) -> list[str]:
        """A command prefix that runs its command inside the namespace (network only)."""
        return ["nsenter", f"--net={self.path}", "--"]


_live: set[PrivateNetwork] = set()


@atexit.register
def _remove_leftovers() -> None:
    for net in list(_live):
        with contextlib.suppress(Exception):
            net.close()


class PrivateNetwork:
    """A bridge on the host with a /24 of its own, and namespaces attached to it."""

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise NetworkError(reason)
        self.namespaces: dict[str, NetworkNamespace] = {}
        self._closed = False
        with _machine_lock():
            _remove_orphans()
            self.subnet = _free_subnet()
            hosts = list(self.subnet.hosts())
            self.gateway = str(hosts[0])
            self._free = [str(h) for h in hosts[1:]]
            self.bridge = _new_bridge_name()
            _ip("link", "add", self.bridge, "type", "bridge")
            _live.add(self)
            try:
                _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
                _ip("link", "set", self.bridge, "up")
            except BaseException:
                self.close()
                raise

    def add(self, name: str) -> NetworkNamespace:
        """A new namespace on the bridge, with the next free address."""
        if self._closed:
            raise NetworkError("this network was closed")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
            raise ValueError(f"namespace name {name!r}: letters, digits, '_', '.', '-' only")
        if not self._free:
            raise NetworkError(f"no address left on {self.subnet}")
        tag = uuid.uuid4().hex[:8]
        ns = NetworkNamespace(name=f"{_PREFIX}-{os.getpid()}-{tag}-{name}", ip=self._free.pop(0),
                              gateway=self.gateway, veth=f"aiv{tag}")
        inner = f"aiw{tag}"
        _ip("netns", "add", ns.name)
        self.namespaces[ns.name] = ns
        try:
            _ip("link", "add", ns.veth, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns.name)
            _ip("link", "set", ns.veth, "master", self.bridge)
            _ip("link", "set", ns.veth, "up")
            _ip("-n", ns.name, "link", "set", "lo", "up")
            _ip("-n", ns.name, "addr", "add", f"{ns.ip}/{self.subnet.prefixlen}", "dev", inner)
            _ip("-n", ns.name, "link", "set", inner, "up")
            _ip("-n", ns.name, "route", "add", "default", "via", self.gateway)
        except BaseException:
            self.remove(ns)
            raise
        return ns

    def remove(self, ns: NetworkNamespace) -> None:
        """Remove the namespace (its end of the veth goes with it) and the host's end.
        Processes still inside keep the namespace alive, without its name:
        stop them first."""
        self.namespaces.pop(ns.name, None)
        _ip("netns", "delete", ns.name, check=False)
        _ip("link", "delete", ns.veth, check=False)

    def close(self) -> None:
        """Every namespace, then the bridge. Safe to call twice."""
        if self._closed:
            return
        try:
            for ns in list(self.namespaces.values()):
                self.remove(ns)
            _ip("link", "delete", self.bridge, check=False)
        finally:
            self._closed = True
            _live.discard(self)

    def __enter__(self) -> PrivateNetwork:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Held while a subnet is picked and its bridge given the address, so two sessions never pick one /24."""
    with open(_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_subnet() -> ipaddress.IPv4Network:
    used = set()
    for line in _ip("-o", "-4", "addr", "show").splitlines():
        match = re.search(r"inet (\S+)", line)
        if match:
            used.add(ipaddress.ip_interface(match.group(1)).network)
    for route in _ip("-4", "route", "show").splitlines():
        first = route.split()[0] if route.split() else ""
        with contextlib.suppress(ValueError):
            used.add(ipaddress.ip_network(first, strict=False))
    for subnet in _SUPERNET.subnets(new_prefix=24):
        if subnet.network_address.packed[2] == 0:
            continue  # 10.200.0.0/24 left alone: the likeliest to be somebody's by hand
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise NetworkError(f"every /24 of {_SUPERNET} is in use on this machine")


def _new_bridge_name() -> str:
    existing = set(_ip("-o", "link", "show").split())
    n = 0
    while True:
        name = f"aib{os.getpid()}x{n}"
        if f"{name}:" not in existing:
            return name[:15]
        n += 1


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _remove_orphans() -> None:
    """Namespaces and bridges whose creating process is gone (a killed test run)."""
    if _NETNS_DIR.is_dir():
        for entry in _NETNS_DIR.iterdir():
            match = re.fullmatch(rf"{_PREFIX}-(\d+)-[0-9a-f]{{8}}-.*", entry.name)
            if match and not _pid_alive(int(match.group(1))):
                _ip("netns", "delete", entry.name, check=False)
    for line in _ip("-o", "link", "show").splitlines():
        match = re.match(r"\d+: (aib(\d+)x\d+)[:@]", line)
        if match and not _pid_alive(int(match.group(2))):
            _ip("link", "delete", match.group(1), check=False)
