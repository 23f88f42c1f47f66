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


RESTART_FIRST = 0.5  # seconds before restarting a child that a signal ended soon after start
RESTART_MAX = 30.0  # the longest wait between such restarts (doubling from RESTART_FIRST)
HEALTHY_AFTER = 60.0  # a child that ran this long before a signal ended it restarts at once


def supervise(count: int, argv: list[str], *, name: str = "serve", restart_killed: bool = False,
              env: dict[str, str] | None = None) -> int:
    """Run ``argv`` ``count`` times; forward SIGTERM/SIGINT to every child and wait for all.

    A child that exits with a status (a configuration error, the database out of reach, a
    crash) stops the others and the supervisor exits with that status. With ``restart_killed``
    a child ended by a signal (``kill -9``, the OOM killer) is started again: what it held is
    the database's to recover (its leases expire, as for any lost worker process). One that a
    signal ends again soon after each start (``HEALTHY_AFTER``) waits longer before each
    restart, doubling up to ``RESTART_MAX``, instead of starting several times a second.
    """
    env = {**os.environ, **(env or {})}
    slots = [_Slot(_start(argv, env)) for _ in range(count)]
    forwarded: set[int] = set()

    def forward(sig: int, _frame: Any) -> None:
        forwarded.add(sig)
        for slot in slots:
            if slot.child.poll() is None:
                slot.child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    code = 0
    while True:
        now = time.monotonic()
        for slot in slots:
            rc = slot.child.poll()
            if forwarded or rc is None or rc == 0:
                continue
            if rc < 0 and restart_killed:
                if slot.restart_at is None:
                    slot.restart_at = now + slot.backoff(now)
                    print(f"solo-os {name}: process {slot.child.pid} was ended by signal {-rc}; "
                          f"starting another in {slot.restart_at - now:.1f}s", file=sys.stderr, flush=True)
                if now >= slot.restart_at:
                    slot.restarted(_start(argv, env))
                continue
            print(f"solo-os {name}: process {slot.child.pid} exited with {rc}; stopping",
                  file=sys.stderr, flush=True)
            code = _status(rc)
            forward(signal.SIGTERM, None)
        if not any(s.child.poll() is None or (s.restart_at is not None and not forwarded)
                   for s in slots):
            break
        time.sleep(0.2)
    # A child that the forwarded signal ended before it could handle it (still starting) stopped
    # as asked; any other end but 0 is the supervisor's status (128 + N for signal N).
    failed = [s.child.returncode for s in slots
              if s.child.returncode and -s.child.returncode not in forwarded
              and not (s.restart_at is not None and forwarded)]
    return code or (_status(failed[0]) if failed else 0)


class _Slot:
    """One child of the supervisor, and when a signal-ended one is started again."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        self.started = time.monotonic()
        self.delay = 0.0  # the wait before the last restart
        self.restart_at: float | None = None

    def backoff(self, now: float) -> float:
        """The wait before restarting this child, which a signal has just ended."""
        if now - self.started >= HEALTHY_AFTER:
            self.delay = 0.0
        else:
            self.delay = min(RESTART_MAX, max(RESTART_FIRST, 2 * self.delay))
        return self.delay

    def restarted(self, child: subprocess.Popen[bytes]) -> None:
        self.child, self.started, self.restart_at = child, time.monotonic(), None


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
