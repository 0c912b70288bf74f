"""Private networks for nodes on one machine (tests/support/netns.py):
namespaces with addresses of their own that reach each other and the host,
and that leave nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.netns import PrivateNetwork, unavailable_reason
from tests.support.nodes import free_ports
from tests.support.require import require

# A one-shot TCP server: prints when it listens, answers the peer's address, exits.
SERVER = ("import socket, sys\n"
          "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(); print('listening', flush=True)\n"
          "c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()")


def ask(prefix: list[str], host: str, port: int) -> str:
    """The peer address the server saw, asked from inside `prefix`'s namespace."""
    code = ("import socket, sys\ns = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n"
            "print(s.recv(100).decode())")
    done = subprocess.run([*prefix, sys.executable, "-c", code, host, str(port)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def serve_once(prefix: list[str], port: int) -> subprocess.Popen[str]:
    server = subprocess.Popen([*prefix, sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "listening"
    return server


def links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.fixture
def net() -> Iterator[PrivateNetwork]:
    require(unavailable_reason(), "network namespaces")
    with PrivateNetwork() as net:
        yield net


def test_namespaces_reach_each_other_and_the_host_with_their_own_addresses(net: PrivateNetwork) -> None:
    a, b = net.add("a"), net.add("b")
    assert a.ip != b.ip and {a.ip, b.ip} <= {str(h) for h in net.subnet.hosts()}
    assert net.subnet.subnet_of(__import__("ipaddress").ip_network("10.200.0.0/16"))
    [port] = free_ports(1)
    # a -> b: b sees a's own address.
    server = serve_once(b.enter(), port)
    assert ask(a.enter(), b.ip, port) == a.ip
    server.wait(10)
    # The host -> a: a sees the bridge's address.
    server = serve_once(a.enter(), port)
    assert ask([], a.ip, port) == net.gateway
    server.wait(10)
    # a -> the host, at the machine's own address (the one Ray gives the head node).
    host_ip = socket.gethostbyname(socket.gethostname())
    server = serve_once([], port)
    assert ask(a.enter(), net.gateway if host_ip.startswith("127.") else host_ip, port) == a.ip
    server.wait(10)
    # Each has its own ports: the same port listens in a and b at once.
    one, two = serve_once(a.enter(), port), serve_once(b.enter(), port)
    assert ask([], a.ip, port) == ask([], b.ip, port) == net.gateway
    one.wait(10), two.wait(10)


def test_close_removes_every_namespace_veth_and_the_bridge() -> None:
    require(unavailable_reason(), "network namespaces")
    net = PrivateNetwork()
    spaces = [net.add(name) for name in ("x", "y")]
    assert all(ns.name in namespaces() and ns.veth in links() for ns in spaces) and net.bridge in links()
    net.remove(spaces[0])
    assert spaces[0].name not in namespaces() and spaces[0].veth not in links()
    net.close()
    net.close()  # twice is fine
    assert not any(ns.name in namespaces() or ns.veth in links() for ns in spaces)
    assert f"{net.bridge}:" not in links()
    assert str(net.subnet.network_address)[:-2] not in subprocess.run(["ip", "-o", "addr"], capture_output=True,
                                                                      text=True).stdout


def test_what_a_killed_run_left_is_removed_by_the_next(net: PrivateNetwork) -> None:
    # A network whose creating process is gone: its names carry a pid that no longer runs.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    assert not os.path.exists(f"/proc/{dead}")
    bridge, space = f"aib{dead}x0", f"aicmo-{dead}-deadbeef-left"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "netns", "add", space], check=True)
    try:
        with PrivateNetwork():
            assert f"{bridge}:" not in links() and space not in namespaces()
        assert net.bridge in links()  # a live one is left alone
    finally:
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
        subprocess.run(["ip", "netns", "delete", space], capture_output=True)
