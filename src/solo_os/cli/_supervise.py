"""``serve --workers N``: N ingress processes sharing one port (SO_REUSEPORT).

One Python process serves about one core's worth of deliveries; the kernel spreads new
connections over N processes bound to the same port. The parent only supervises: it forwards
SIGTERM/SIGINT, waits for every child to shut down cleanly, and exits with the first failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

REUSE_PORT_ENV = "SOLO_OS_REUSE_PORT"


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


def supervise(workers: int, argv: list[str]) -> int:
    """Run ``argv`` (a ``serve`` command with ``--workers 1``) ``workers`` times; wait for all."""
    env = {**os.environ, REUSE_PORT_ENV: "1"}
    children = [subprocess.Popen(argv, env=env) for _ in range(workers)]  # noqa: S603
    stopping = False

    def forward(sig: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    code = 0
    while any(c.poll() is None for c in children):
        for child in children:
            rc = child.poll()
            if rc not in (None, 0) and not stopping:
                print(f"solo-os serve: a worker process exited with {rc}; stopping", file=sys.stderr)
                code = rc
                forward(signal.SIGTERM, None)
        time.sleep(0.2)
    return code or next((c.returncode for c in children if c.returncode), 0)
