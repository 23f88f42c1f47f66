"""A cluster of hosts for one test or bench run: network namespaces on a private switch
(``_net``), a private PostgreSQL cluster (``tests/chaos/_cluster``) whose postmaster runs on
the ``db`` host and listens only on that host's address, and the real ``solo-os`` CLI started
on the other hosts with ``ip netns exec``. Everything is removed at exit, also on failure.

Under ``CI=true`` a machine that cannot make hosts fails the test; elsewhere it skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from tests.chaos import _cluster, _private, _support
from tests.cluster import _net

APPS = Path(__file__).resolve().parent / "apps"
HTTP_PORT = 8000


@dataclass
class Hosts:
    net: _net.Net
    pg: _cluster.Cluster
    procs: _support.Procs
    database: str = "hosts"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """``DATABASE_URL`` as the hosts see it: the db host's address, through the links."""
        return f"postgresql://postgres@{self.net.addr('db')}:{self.pg.port}/{self.database}"

    async def connect(self) -> asyncpg.Connection:
        """The test's own connection: the cluster's Unix socket (the test is on no host)."""
        return await asyncpg.connect(
            host=str(self.pg.root), port=self.pg.port, user="postgres", database=self.database, timeout=10
        )

    def host_env(self, **extra: str) -> dict[str, str]:
        return _support.env_for(self.url, **{**self.env, **extra})

    def start(self, host: str, args: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        return self.procs.start([*self.net.exec_prefix(host), _support.SOLO_OS, *args], env, host)

    def serve(self, host: str, app: str, env: Mapping[str, str]) -> str:
        """``solo-os serve`` on ``host``; its base URL once ``/readyz`` answers (from ``client``)."""
        proc = self.start(host, ["serve", app, "--host", self.net.addr(host), "--port", str(HTTP_PORT)], env)
        base = f"http://{self.net.addr(host)}:{HTTP_PORT}"
        _net.in_host(self.net, "client", lambda: _support.wait_ready(base, proc))
        return base

    def worker(self, host: str, app: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        return self.start(host, ["worker", app], env)

    def scheduler(self, host: str, app: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        return self.start(host, ["scheduler", app], env)

    async def send(self, bases: list[str], keys: list[str], concurrency: int = 32) -> dict[str, int]:
        """Signed deliveries from the ``client`` host, spread over ``bases``; each key's status."""

        def run() -> dict[str, int]:
            async def all_of() -> dict[str, int]:
                parts = [keys[i :: len(bases)] for i in range(len(bases))]
                results = await asyncio.gather(
                    *(send_all(b, part, concurrency) for b, part in zip(bases, parts, strict=True))
                )
                return {k: v for r in results for k, v in r.items()}

            return asyncio.run(all_of())

        return await asyncio.to_thread(_net.in_host, self.net, "client", run)

    def reachable(self, base: str) -> bool:
        """Whether ``base``'s ``/readyz`` answers from the ``client`` host."""

        def probe() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        return _net.in_host(self.net, "client", probe)


async def send_all(base: str, keys: list[str], concurrency: int) -> dict[str, int]:
    """One signed delivery per key; a delivery whose connection failed is sent again (as a
    provider does: the idempotency key makes that safe), up to 3 times. Each key's status."""
    sem = asyncio.Semaphore(concurrency)
    result: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(key: str) -> None:
            async with sem:
                for _ in range(3):
                    try:
                        result[key] = (await _support.post(client, base, key)).status_code
                        return
                    except httpx.TransportError as exc:
                        result[key] = 0
                        print(f"{key}: {type(exc).__name__}: {exc}", flush=True)

        await asyncio.gather(*(one(k) for k in keys))
    return result


@contextlib.contextmanager
def hosts(log_dir: Path, *names: str) -> Iterator[Hosts]:
    """Hosts ``db``, ``client`` and ``names``, PostgreSQL on ``db`` with an upgraded database."""
    why = _net.why_not()
    if why is not None:
        _private.need(f"hosts cannot be made here: {why}")
    bindir, why_pg = _cluster.find_bindir()
    prefix, why_user = _cluster.runas_prefix()
    if bindir is None or prefix is None:
        _private.need(f"a private PostgreSQL cluster cannot be made here: {why_pg or why_user}")
    assert bindir is not None and prefix is not None
    with _net.network("db", "client", *names) as net:
        # The real bin directory (initdb may be a symlink where createdb is not).
        pg = _cluster.Cluster((bindir / "initdb").resolve().parent, [*net.exec_prefix("db"), *prefix])
        pg.listen = net.addr("db")
        try:
            pg.init()
            with open(pg.data / "pg_hba.conf", "a") as hba:  # the hosts' subnet, nothing else
                hba.write(f"host all all 10.231.{net.subnet}.0/24 trust\n")
            pg.start()
            with _support.processes(log_dir) as procs:
                h = Hosts(net, pg, procs)
                _create(h, names[0] if names else "db")
                yield h
        finally:
            try:
                pg.stop()
            finally:
                pg.remove()


def _create(h: Hosts, host: str) -> None:
    """Create the database (on the db host) and run ``solo-os db upgrade`` from ``host``."""
    socket = ("-h", str(h.pg.root), "-p", str(h.pg.port), "-U", "postgres")
    h.pg._run("createdb", *socket, h.database)
    # Commits do not wait for the WAL's fsync: this machine's shared disk syncs a few dozen
    # times a second, which would measure the disk, not the coordination between hosts.
    h.pg._run("psql", *socket, "-c", f"ALTER DATABASE {h.database} SET synchronous_commit = off")
    upgrade = subprocess.run(
        [*h.net.exec_prefix(host), _support.SOLO_OS, "db", "upgrade"],
        env=h.host_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upgrade.returncode == 0, upgrade.stderr
