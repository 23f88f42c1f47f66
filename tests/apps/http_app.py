"""Outbound HTTP tests: an app whose handlers call ``ctx.http``, and the server they call.

``Target`` is the far side: a real HTTP server (Starlette under uvicorn, in a thread of the
test process, on a free port) that records the arrival time, method, path, query, headers and
body of every request, and answers from a per-path script (e.g. "503, then 503, then 200").

``make_app(target_url, ...)`` builds the app; worker subprocesses load the module-level
``app``, built from ``TARGET_URL``, ``RATE`` and ``BURST`` in their environment. Handlers:

- ``charge`` (``charge``): POST ``/charge`` with the event's ``n``; raises on an error status.
- ``charge_sync`` (``charge.sync``): the same from a plain ``def`` through ``ctx.http.sync``.
- ``charge_then_fail`` (``charge.flaky``): POST ``/charge``, then fail the first attempt.
- ``stepped`` (``charge.steps``): POST ``/charge`` twice outside steps and once in step ``pay``.
- ``throttled`` (``charge.throttled``): POST ``/charge`` counted against the ``tight`` limit.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from solo_os import App, Context, Retry, sources

# --- the far side -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() at arrival
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Target:
    """A recording HTTP server; ``url`` is its base URL once started."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    _scripts: dict[str, deque[tuple[int, dict[str, str]]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def script(self, path: str, *responses: tuple[int, dict[str, str]]) -> None:
        """Answer the next requests to ``path`` with these (status, headers); then 200."""
        with self._lock:
            self._scripts[path].extend(responses)

    def requests(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path is None or s.path == path]

    @property
    def hostport(self) -> str:
        return httpx.URL(self.url).netloc.decode()

    async def _handle(self, request: Request) -> Response:
        arrived = time.monotonic()
        body = await request.body()
        path = request.url.path
        with self._lock:
            self.seen.append(
                Seen(arrived, request.method, path, request.url.query, dict(request.headers), body)
            )
            scripted = self._scripts[path].popleft() if self._scripts[path] else None
        if path == "/slow":
            await asyncio.sleep(float(request.query_params.get("s", "5")))
        if scripted is not None:
            status, headers = scripted
            return JSONResponse({"scripted": status}, status_code=status, headers=headers)
        return JSONResponse({"ok": True, "path": path})

    def start(self) -> Target:
        app = Starlette(
            routes=[
                Route("/_control/seen", self._control_seen, methods=["GET"]),
                Route("/_control/script", self._control_script, methods=["POST"]),
                Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            ]
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, lifespan="off", ws="none", http="h11", log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="target"
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the target server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    # --- the same server in a process of its own --------------------------------------------
    # Arrival times taken in a thread of a busy test process lag behind (the GIL); a server
    # process of its own timestamps precisely. It is driven through two control routes.

    async def _control_seen(self, request: Request) -> Response:
        return JSONResponse(
            [
                {**s.__dict__, "body": s.body.decode("utf-8", "replace")}
                for s in self.requests()
            ]
        )

    async def _control_script(self, request: Request) -> Response:
        data = await request.json()
        self.script(data["path"], *[(int(st), dict(h)) for st, h in data["responses"]])
        return JSONResponse({"ok": True})


class RemoteTarget:
    """``Target`` in a subprocess (``python tests/apps/http_app.py``); same interface."""

    def __init__(self) -> None:
        import subprocess
        import sys

        self._proc = subprocess.Popen(
            [sys.executable, __file__], stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self._proc.kill()
            raise RuntimeError("the target server process did not start")

    @property
    def hostport(self) -> str:
        return httpx.URL(self.url).netloc.decode()

    def script(self, path: str, *responses: tuple[int, dict[str, str]]) -> None:
        httpx.post(
            f"{self.url}/_control/script", json={"path": path, "responses": responses}
        ).raise_for_status()

    def requests(self, path: str | None = None) -> list[Seen]:
        rows = httpx.get(f"{self.url}/_control/seen").json()
        seen = [Seen(**{**r, "body": r["body"].encode()}) for r in rows]
        return [s for s in seen if path is None or s.path == path]

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


# --- the app -----------------------------------------------------------------------------------


def make_app(
    target_url: str,
    *,
    rate: float = 20.0,
    burst: float = 5.0,
    tight: tuple[float, str] = (1.0, "hour"),
    **http_options: Any,
) -> App:
    """The test app; the target's host:port is rate-limited at ``rate``/s with ``burst``."""
    app = App(service="http-test")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
    app.rate_limit(httpx.URL(target_url).netloc.decode(), rate=rate, burst=burst)
    app.rate_limit("tight", rate=tight[0], per=tight[1], burst=1)  # type: ignore[arg-type]
    if http_options:
        app.http(**http_options)
    charge_url = f"{target_url}/charge"

    @app.on("billing", "charge", retry=Retry(max_attempts=5, base_delay=0.05))
    async def charge(event: dict[str, Any], ctx: Context) -> None:
        r = await ctx.http.post(
            charge_url, json={"n": event.get("n")}, headers={"x-pid": str(os.getpid())}
        )
        r.raise_for_status()

    @app.on("billing", "charge.sync", retry=Retry(max_attempts=3, base_delay=0.05))
    def charge_sync(event: dict[str, Any], ctx: Context) -> None:
        r = ctx.http.sync.post(charge_url, json={"n": event.get("n")})
        r.raise_for_status()

    @app.on("billing", "charge.flaky", retry=Retry(max_attempts=3, base_delay=0.05))
    async def charge_then_fail(event: dict[str, Any], ctx: Context) -> None:
        (await ctx.http.post(charge_url, json={"n": event.get("n")})).raise_for_status()
        if ctx.attempt == 1:
            raise RuntimeError("failed after charging")

    @app.on("billing", "charge.steps", retry=Retry(max_attempts=3, base_delay=0.05))
    async def stepped(event: dict[str, Any], ctx: Context) -> None:
        async def pay() -> int:
            r = await ctx.http.post(charge_url, json={"in": "step"})
            return r.status_code

        await ctx.http.post(charge_url, json={"in": "handler", "i": 1})
        await ctx.step("pay", pay)
        await ctx.http.post(charge_url, json={"in": "handler", "i": 2})
        if ctx.attempt == 1:
            raise RuntimeError("fail once after the step")

    @app.on("billing", "charge.throttled", retry=Retry(max_attempts=1))
    async def throttled(event: dict[str, Any], ctx: Context) -> None:
        (await ctx.http.post(charge_url, rate_key="tight")).raise_for_status()

    return app


app = make_app(
    os.environ.get("TARGET_URL", "http://127.0.0.1:9"),
    rate=float(os.environ.get("RATE", "20")),
    burst=float(os.environ.get("BURST", "5")),
)


if __name__ == "__main__":  # RemoteTarget's process: print the URL, serve until SIGTERM
    server = Target().start()
    print(server.url, flush=True)
    if server._thread is not None:
        server._thread.join()
