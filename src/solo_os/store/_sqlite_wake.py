"""Wake-ups between processes that share one SQLite file (``serve`` and ``worker`` apart).

PostgreSQL has LISTEN/NOTIFY; SQLite has nothing of the kind, so a worker in another process
than the ingress found new work only at its next poll (``SOLO_OS_POLL_INTERVAL``, 1 s: a
receive-to-start p99 of about a second). Here each process that waits for work binds a Unix
datagram socket in a folder named after the database file (under the temporary directory,
private to the user), and a process that writes new work sends one tiny datagram to every other
socket there. It is a hint, never the truth: a lost datagram costs at most one poll interval,
and the claim still reads the database.

The signal goes out inside the writing transaction, before its commit. That is safe on SQLite:
the woken worker's claim takes the write lock (``BEGIN IMMEDIATE``), so it waits for that
commit and then sees the rows. Written by hand because no library offers this for SQLite;
it is ~100 lines of the standard library (``socket``, ``asyncio.add_reader``).

The same sockets carry timers: a workflow's sleep or timeout stored by one process
(``send_timer``, after its commit, with the wake time) wakes the wake loop of every other
process that waits, as ``NOTIFY solo_os_timers`` does on PostgreSQL; without it another process
saw such a timer only at its wake loop's once-a-second look.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import structlog

log = structlog.get_logger("solo_os.store")
RELIST_SECONDS = 1.0  # how stale the list of listening processes may be
WORK = b"w"  # new work may be due
TIMER = b"t"  # followed by a wake time (ISO 8601): a sleep's end or a timeout was stored


def folder_for(database: str | None) -> Path | None:
    """The folder of the wake-up sockets of the database file ``database`` (None: no file, or
    a platform without Unix datagram sockets)."""
    if not database or database == ":memory:" or not hasattr(socket, "AF_UNIX"):
        return None
    digest = hashlib.sha256(os.path.realpath(database).encode("utf-8")).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"solo-os-wake-{digest}"


class Wakeups:
    """One process's end: ``listen`` to be woken, ``send`` to wake the others."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._sock: socket.socket | None = None
        self._path: str | None = None
        self._out: socket.socket | None = None
        self._peers: list[str] = []
        self._listed = -RELIST_SECONDS

    def _usable(self) -> bool:
        """Create the folder (mode 0700); refuse one another user made (no wake-ups then)."""
        if self.folder is None:
            return False
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            return self.folder.stat().st_uid == os.getuid()
        except OSError:
            return False

    def listen(
        self, wake: Callable[[], None], timer: Callable[[datetime | None], None] | None = None
    ) -> bool:
        """Bind this process's socket; call ``wake`` on a work signal and ``timer`` with the
        earliest wake time of the timer signals (None: unreadable). False if it cannot."""
        if self._sock is not None:
            return True
        if self.folder is None:
            return False
        path = str(self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        for _ in range(2):  # a closing process may remove the empty folder in between
            try:
                if not self._usable():
                    break
                sock.bind(path)
                loop = asyncio.get_running_loop()
                loop.add_reader(sock.fileno(), self._readable, sock, wake, timer)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("store.wakeup_unavailable", error=type(exc).__name__)
                break
            self._sock, self._path = sock, path
            return True
        sock.close()
        return False

    @staticmethod
    def _readable(
        sock: socket.socket,
        wake: Callable[[], None],
        timer: Callable[[datetime | None], None] | None,
    ) -> None:
        work = False
        times: list[datetime | None] = []
        with contextlib.suppress(OSError):
            while signal := sock.recv(64):  # drain: many signals wake once
                if signal[:1] == TIMER:
                    times.append(_wake_time(signal[1:]))
                else:
                    work = True
        if work:
            wake()
        if times and timer is not None:
            timer(None if None in times else min(t for t in times if t is not None))

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
                os.rmdir(os.path.dirname(self._path))  # only when no other process is in it
            self._path = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def send_timer(self, at: datetime) -> int:
        """Tell every other listening process that a wake time ``at`` was stored (send it after
        the commit: the receiver reads the database at once)."""
        return self.send(TIMER + at.isoformat().encode("ascii"))

    def send(self, signal: bytes = WORK) -> int:
        """Signal every other listening process; the number signalled."""
        if self.folder is None:
            return 0
        now = time.monotonic()
        if now - self._listed >= RELIST_SECONDS:
            try:
                self._peers = [e.path for e in os.scandir(self.folder) if e.name.endswith(".sock")]
            except OSError:
                self._peers = []
            self._listed = now
        if self._out is None and self._peers:
            self._out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._out.setblocking(False)
        sent = 0
        for peer in list(self._peers):
            if peer == self._path or self._out is None:
                continue
            try:
                self._out.sendto(signal, peer)
                sent += 1
            except BlockingIOError:
                sent += 1  # its queue is full of signals: it is being woken already
            except (ConnectionRefusedError, FileNotFoundError):
                self._peers.remove(peer)  # a process that died without closing: tidy up
                with contextlib.suppress(OSError):
                    os.unlink(peer)
            except OSError:
                pass
        return sent


def _wake_time(text: bytes) -> datetime | None:
    try:
        return datetime.fromisoformat(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
