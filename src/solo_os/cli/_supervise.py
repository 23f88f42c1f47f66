"""``serve --workers N`` and ``worker --processes N``: N processes of one role, supervised.

``serve``: N ingress processes sharing one port (SO_REUSEPORT).

One Python process serves about one core's worth of deliveries; the kernel spreads new
connections over N processes bound to the same port. ``worker``: N worker processes, each
claiming from the database on its own (as separate ``solo-os worker`` processes would), so the
drain is not bound by one Python process's core. The parent only supervises: it forwards
SIGTERM/SIGINT, waits for every child to shut down cleanly, and exits with the first failure.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

REUSE_PORT_ENV = "SOLO_OS_REUSE_PORT"
_PR_SET_PDEATHSIG = 1  # prctl(2)


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket that several processes can bind at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(count: int, argv: list[str], *, name: str = "serve", restart_killed: bool = False,
              env: dict[str, str] | None = None) -> int:
    """Run ``argv`` ``count`` times; forward SIGTERM/SIGINT to every child and wait for all.

    A child that exits with a status (a configuration error, the database out of reach, a
    crash) stops the others and the supervisor exits with that status. With ``restart_killed``
    a child ended by a signal (``kill -9``, the OOM killer) is started again: what it held is
    the database's to recover (its leases expire, as for any lost worker process).
    """
    env = {**os.environ, **(env or {})}
    children = [_start(argv, env) for _ in range(count)]
    forwarded: set[int] = set()

    def forward(sig: int, _frame: Any) -> None:
        forwarded.add(sig)
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    code = 0
    while any(c.poll() is None for c in children):
        for i, child in enumerate(children):
            rc = child.poll()
            if rc is None or rc == 0 or forwarded:
                continue
            if rc < 0 and restart_killed:
                print(f"solo-os {name}: process {child.pid} was ended by signal {-rc}; starting another",
                      file=sys.stderr, flush=True)
                children[i] = _start(argv, env)
                continue
            print(f"solo-os {name}: process {child.pid} exited with {rc}; stopping",
                  file=sys.stderr, flush=True)
            code = _status(rc)
            forward(signal.SIGTERM, None)
        time.sleep(0.2)
    # A child that the forwarded signal ended before it could handle it (still starting) stopped
    # as asked; any other end but 0 is the supervisor's status (128 + N for signal N).
    failed = [c.returncode for c in children if c.returncode and -c.returncode not in forwarded]
    return code or (_status(failed[0]) if failed else 0)


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    parent = os.getpid()

    def end_with_parent() -> None:
        # A supervisor killed outright (kill -9) takes its children along: they get SIGTERM and
        # stop as after a normal shutdown, instead of running on unseen (Linux only).
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(0)

    return subprocess.Popen(argv, env=env, preexec_fn=end_with_parent)  # noqa: S603
