"""Hosts as Linux network namespaces on one private switch, made and removed by one test.

Every host is a namespace ``so<id>-<name>`` with one interface ``eth0`` (address
``10.231.<n>.<i>/24``), the other end of its veth pair plugged into a bridge that lives in a
namespace of its own (``so<id>-sw``). Nothing is added to the root namespace: no interface,
address or route. ``cut`` sets a host's ``eth0`` down (its side of the link), ``restore`` sets it
up again; the kernel keeps the address and puts the route back.

The test process itself stays in the root namespace: it reaches the private PostgreSQL through
its Unix socket, and a host's addresses through ``in_host`` (a thread that enters the host's
namespace with ``setns``, so every socket it opens belongs to that host).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def why_not() -> str | None:
    """Why hosts cannot be made here (None: they can)."""
    if os.uname().sysname != "Linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


class Net:
    """The switch and the hosts of one test."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:6]
        self.subnet = random.randint(1, 254)
        self.switch = f"so{self.id}-sw"
        self.hosts: dict[str, tuple[str, str]] = {}  # name -> (namespace, address)

    def up(self) -> None:
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")

    def add(self, name: str) -> str:
        """A new host ``name`` on the switch; its address."""
        index = len(self.hosts) + 1
        ns, addr = f"so{self.id}-{name}", f"10.231.{self.subnet}.{index}"
        _ip("netns", "add", ns)
        self.hosts[name] = (ns, addr)
        port = f"p{index}"
        _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return addr

    def ns(self, name: str) -> str:
        return self.hosts[name][0]

    def addr(self, name: str) -> str:
        return self.hosts[name][1]

    def exec_prefix(self, name: str) -> list[str]:
        """The command prefix that runs a command on host ``name``."""
        return ["ip", "netns", "exec", self.ns(name)]

    def cut(self, name: str) -> None:
        _ip("-n", self.ns(name), "link", "set", "eth0", "down")

    def restore(self, name: str) -> None:
        _ip("-n", self.ns(name), "link", "set", "eth0", "up")

    def down(self) -> None:
        """Remove every namespace (and so every veth pair and the bridge)."""
        for ns, _ in self.hosts.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.switch], capture_output=True, timeout=30)
        self.hosts.clear()


@contextlib.contextmanager
def network(*names: str) -> Iterator[Net]:
    net = Net()
    try:
        net.up()
        for name in names:
            net.add(name)
        yield net
    finally:
        net.down()


def in_host(net: Net, name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread inside host ``name``'s network namespace; its result."""
    box: dict[str, T] = {}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{net.ns(name)}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            box["result"] = fn()
        except BaseException as exc:  # handed back to the caller
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box["result"]
