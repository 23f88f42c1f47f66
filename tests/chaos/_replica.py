"""A primary and a synchronous streaming standby (``initdb`` + ``pg_basebackup``), private
ports, made and removed by one test; and a TCP relay standing in for an address that moves."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

import asyncpg

from tests.chaos import _cluster, _private


@contextlib.contextmanager
def pair() -> Iterator[tuple[_cluster.Cluster, _cluster.Cluster]]:
    with _private.cluster() as primary:
        # The real bin directory (initdb may be a symlink where pg_basebackup is not).
        standby = _cluster.Cluster((primary.bindir / "initdb").resolve().parent, primary.prefix)
        try:
            standby._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                         "-D", str(standby.data), "-R", "-X", "stream", "--no-sync")
            standby.start()
            yield primary, standby
        finally:
            try:
                standby.stop()
            finally:
                standby.remove()


async def make_synchronous(primary: _cluster.Cluster) -> None:
    """Commits wait for the standby (after it has connected)."""
    conn = await asyncpg.connect(primary.url(), timeout=10)
    try:
        for _ in range(100):
            if await conn.fetchval("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"):
                break
            await asyncio.sleep(0.1)
        await conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        await conn.execute("SELECT pg_reload_conf()")
        for _ in range(100):
            if await conn.fetchval("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the standby did not become synchronous")
    finally:
        await conn.close()


def kill_postmaster(c: _cluster.Cluster) -> None:
    """``kill -9`` of the postmaster (its backends notice and exit by themselves)."""
    pid = int((c.data / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    c.started = False


def promote(c: _cluster.Cluster) -> None:
    c._run("pg_ctl", "-D", str(c.data), "-w", "-t", "60", "promote")


class Relay:
    """``127.0.0.1:port`` forwarding to ``target``; ``move`` drops every connection and
    sends new ones to another port (a virtual IP or a managed database's DNS flip)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @contextlib.contextmanager
    def running(self) -> Iterator[Relay]:
        """Serve from a thread of its own (the test's loop may block in ``wait_ready``)."""
        loop = asyncio.new_event_loop()

        async def open_server() -> None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(open_server(), loop).result(10)
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(self._close)
            thread.join(5)

    def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._drop()
        for t in list(self._tasks):
            t.cancel()
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, loop.stop)

    def move(self, target: int | None) -> None:
        """Drop every connection; new ones go to ``target`` (None: refuse them)."""
        self.target = target or 0
        self._loop_call(self._drop)

    def _loop_call(self, fn: Callable[[], None]) -> None:
        if self._server is not None:
            self._server.get_loop().call_soon_threadsafe(fn)

    def _drop(self) -> None:
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.target:
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_w}
        for src, dst in ((reader, up_w), (up_r, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.transport.abort()
