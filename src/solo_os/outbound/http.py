"""``ctx.http``: outbound HTTP for handlers, with shared rate limits, retries and idempotency keys.

One ``Client`` per worker process holds one ``httpx.AsyncClient`` (a connection pool) and one
``Gate`` (``outbound/gate.py``) per rate-limited key; every attempt gets a light ``Session``
bound to its execution (``ctx.http``). Plain ``def`` handlers run in a worker thread and call
``ctx.http.sync``, which runs the same async code on the worker's event loop and blocks the
thread for the answer.

A call to a rate-limited key first takes a token from the key's bucket in the store, shared by
every process. Concurrent callers in one process wait on the key's gate, and the gate takes
tokens for all of them in one store round trip, so the store sees one transaction per batch
of calls, not one per call. A token is never held back for later: tokens are taken only for
callers that are waiting now, so the declared rate holds across processes.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import logging
import random
import time
import uuid
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import structlog
from opentelemetry import trace

from solo_os import errors
from solo_os.core import ratelimit
from solo_os.observability import tracing
from solo_os.outbound import gate as gate_mod
from solo_os.outbound import options as options_mod
from solo_os.outbound import retrying
from solo_os.outbound.gate import Buckets as Buckets
from solo_os.outbound.retrying import IDEMPOTENT_METHODS as IDEMPOTENT_METHODS
from solo_os.outbound.retrying import NOT_SENT as NOT_SENT
from solo_os.outbound.retrying import RETRY_AFTER_STATUSES

_log = structlog.get_logger("solo_os.http")
T = TypeVar("T")

STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar("solo_os_step", default=None)
"""The name of the durable step running in this context (set by ``Context.step``)."""

IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d3c8e-4b7a-5e2f-9c1d-0a7b3e5f2d91")
"""uuid5 namespace of derived ``Idempotency-Key`` values (fixed: changing it changes every key)."""

USER_AGENT = "solo-os"


class Client:
    """The outbound HTTP client of one worker process (one connection pool for every call)."""

    def __init__(
        self,
        *,
        limits: Mapping[str, ratelimit.Limit] | None = None,
        options: options_mod.HttpOptions | None = None,
        buckets: Buckets | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.limits = dict(limits or {})
        self.options = options or options_mod.HttpOptions()
        if self.limits and buckets is None:
            raise errors.ConfigError("rate limits need a store to share their buckets in")
        self._buckets = buckets
        self._transport = transport
        self._rng = rng or random.Random()
        self._gates: dict[str, gate_mod.Gate] = {}
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Open the connection pool on the running loop (the loop ``ctx.http.sync`` uses)."""
        if self._http is not None:
            return
        self._loop = asyncio.get_running_loop()
        # httpx closes its pool through anyio, which imports its asyncio backend on first use:
        # import it now, not in the shutdown, where a spinning handler thread competes for the
        # GIL and the import alone could outlast the grace (the watchdog then exits with 1).
        importlib.import_module("anyio._backends._asyncio")
        o = self.options
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(o.timeout, connect=o.connect_timeout or o.timeout),
            limits=httpx.Limits(
                max_connections=o.max_connections,
                max_keepalive_connections=min(o.max_connections, 20),
            ),
            headers={"User-Agent": USER_AGENT},
            transport=self._transport,
        )
        # httpx logs every request's full URL (query strings included) at INFO; our own
        # `http.call` line replaces it without the query.
        httpx_logger = logging.getLogger("httpx")
        if httpx_logger.level == logging.NOTSET:
            httpx_logger.setLevel(logging.WARNING)

    async def aclose(self) -> None:
        for gate in self._gates.values():
            gate.close()
        self._gates.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def session(
        self,
        *,
        execution_id: uuid.UUID,
        correlation_id: str,
        log: Any = None,
        deadline: float | None = None,
    ) -> Session:
        """``ctx.http`` for one attempt; ``deadline`` is the handler's timeout (loop time)."""
        return Session(self, execution_id, correlation_id, log, deadline)

    # --- used by sessions ------------------------------------------------------------------

    async def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            await self.start()
        client = self._http
        if client is None:  # closed while this call waited
            raise RuntimeError("ctx.http is closed (the worker is stopping)")
        return client

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("ctx.http is not started: the worker starts it with its event loop")
        return self._loop

    def limit_for(self, url: httpx.URL, rate_key: str | None) -> ratelimit.Limit | None:
        """The declared limit a call to ``url`` counts against (``rate_key`` wins over the host)."""
        if rate_key is not None:
            found = self.limits.get(rate_key)
            if found is None:
                raise errors.ConfigError(
                    f"rate_key {rate_key!r} is not declared; add app.rate_limit({rate_key!r}, rate=...)"
                )
            return found
        host = url.host.lower()
        if url.port is not None:
            found = self.limits.get(f"{host}:{url.port}")
            if found is not None:
                return found
        return self.limits.get(host)

    def _store(self) -> Buckets:
        if self._buckets is None:  # __init__ refuses limits without a store
            raise errors.ConfigError("rate limits need a store to share their buckets in")
        return self._buckets

    async def acquire(self, limit: ratelimit.Limit, deadline: float) -> None:
        gate = self._gates.get(limit.key)
        if gate is None:
            gate = self._gates[limit.key] = gate_mod.Gate(limit, self._store())
        await gate.acquire(deadline)

    async def pause(self, limit: ratelimit.Limit, seconds: float) -> datetime:
        return await self._store().pause_key(limit.key, seconds, limit.capacity)

    def backoff(self, tried: int) -> float:
        return ratelimit.backoff(tried, self.options.backoff, self.options.max_backoff, self._rng)


class Session:
    """``ctx.http``: the outbound client as one attempt of one execution sees it.

    Methods mirror httpx (``get``, ``post``, ..., ``request``) and return an
    ``httpx.Response`` whose body is already read. Beyond httpx's arguments each takes:

    - ``idempotency_key``: ``True`` (default) derives a stable key for POST (see
      ``idempotency_key_for``), a string sends that key, ``False`` sends none.
    - ``rate_key``: count the call against this declared limit instead of the URL's host.
    - ``max_wait``: seconds to wait for a rate-limit token (default ``app.http(max_wait=)``).
    - ``retries``: tries for this call (default ``app.http(retries=)``).
    - ``timeout``: seconds (or an ``httpx.Timeout``) for this call; ``None`` is the app's
      default, never "no timeout".
    """

    def __init__(
        self,
        client: Client,
        execution_id: uuid.UUID,
        correlation_id: str,
        log: Any,
        deadline: float | None,
    ) -> None:
        self._client = client
        self.execution_id = execution_id
        self.correlation_id = correlation_id
        self._log = log if log is not None else _log.bind(
            correlation_id=correlation_id, execution_id=str(execution_id)
        )
        self._deadline = deadline
        self._calls: dict[tuple[str, str], int] = {}
        self.sync = SyncSession(self)

    def __repr__(self) -> str:
        return f"<ctx.http execution={self.execution_id}>"

    async def get(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    async def head(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return await self.request("HEAD", url, **kw)

    async def options(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return await self.request("OPTIONS", url, **kw)

    async def post(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, **kw)

    async def put(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return await self.request("PUT", url, **kw)

    async def patch(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kw)

    async def delete(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kw)

    async def request(self, method: str, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        """Send one request (retried as the module describes) and return the response."""
        return await self._request(method, url, STEP.get(), **kw)

    def idempotency_key_for(self, method: str, url: str | httpx.URL, step: str | None) -> str:
        """The next derived ``Idempotency-Key`` for ``method url`` in ``step`` (None: outside steps).

        ``uuid5(IDEMPOTENCY_NAMESPACE, "{execution_id}|{step}|{METHOD} {scheme}://{host}:{port}{path}|{n}")``
        where ``n`` counts the derived keys of that same method and URL (query string
        excluded) in that same step of this attempt, from 1. Each attempt counts afresh, so
        an attempt that makes its calls in the same order as the last one sends the same keys.
        """
        u = httpx.URL(url)
        port = u.port or (443 if u.scheme == "https" else 80)
        target = f"{method.upper()} {u.scheme}://{u.host.lower()}:{port}{u.path}"
        scope = (step or "", target)
        n = self._calls.get(scope, 0) + 1
        self._calls[scope] = n
        return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{self.execution_id}|{step or ''}|{target}|{n}"))

    # --- the one async core ----------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str | httpx.URL,
        step: str | None,
        *,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        content: Any = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        cookies: Any = None,
        timeout: float | httpx.Timeout | None = None,
        follow_redirects: bool = False,
        idempotency_key: str | bool = True,
        rate_key: str | None = None,
        max_wait: float | None = None,
        retries: int | None = None,
    ) -> httpx.Response:
        method = method.upper()
        opts = self._client.options
        tries = opts.retries if retries is None else retries
        if not (isinstance(tries, int) and tries >= 1):
            raise ValueError("retries= is the number of tries: an integer >= 1")
        wait_budget = opts.max_wait if max_wait is None else max_wait
        if not wait_budget >= 0:
            raise ValueError("max_wait= must be >= 0 seconds")
        client = await self._client._client()
        request = client.build_request(
            method, url, params=params, headers=headers, content=content, data=data, files=files,
            json=json, cookies=cookies,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        self._decorate(request, step, idempotency_key)
        limit = self._client.limit_for(request.url, rate_key)
        deadline = asyncio.get_running_loop().time() + wait_budget
        if self._deadline is not None:
            deadline = min(deadline, self._deadline)
        call = retrying.Call(
            method=method, request=request, limit=limit, tries=tries, deadline=deadline,
            keyed="idempotency-key" in request.headers,
            replayable=isinstance(request.stream, httpx.ByteStream),
            follow_redirects=follow_redirects, where=_where(request.url),
            own_traceparent="traceparent" in request.headers,
        )
        return await self._send(client, call)

    async def _send(self, client: httpx.AsyncClient, call: retrying.Call) -> httpx.Response:
        """Try ``call`` until it is answered for good, retrying what is safe to retry."""
        while True:
            if call.limit is not None:
                await self._take_token(call, call.limit)
            call.tried += 1
            t0 = time.perf_counter()
            try:
                response = await self._send_once(client, call)
            except httpx.TransportError as exc:
                delay = self._after_transport_error(call, exc, t0)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            ms = round((time.perf_counter() - t0) * 1000, 2)
            again = await self._after_response(call, response, ms)
            if again is None:
                return response
            await response.aclose()
            delay, at_gate = again
            if not at_gate:
                await asyncio.sleep(delay)  # a keyed call waits for the pause at its gate

    async def _take_token(self, call: retrying.Call, limit: ratelimit.Limit) -> None:
        try:
            await self._client.acquire(limit, call.deadline)
        except errors.RateLimited as exc:
            self._log.info(
                "http.rate_limited", method=call.method, **call.where, rate_key=limit.key,
                retry_in=round(exc.seconds, 3),
            )
            raise

    async def _send_once(self, client: httpx.AsyncClient, call: retrying.Call) -> httpx.Response:
        request = call.request
        with tracing.span(
            f"HTTP {call.method}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "http.request.method": call.method,
                "server.address": request.url.host,
                "url.path": request.url.path,
                "http.request.resend_count": call.tried - 1,
            },
        ) as span:
            if not call.own_traceparent:
                traceparent = tracing.current_traceparent()
                if traceparent:
                    request.headers["traceparent"] = traceparent
            response = await client.send(request, follow_redirects=call.follow_redirects)
            span.set_attribute("http.response.status_code", response.status_code)
        return response

    def _after_transport_error(
        self, call: retrying.Call, exc: httpx.TransportError, t0: float
    ) -> float | None:
        """Log a call that got no answer; the delay before trying again, or None to raise."""
        ms = round((time.perf_counter() - t0) * 1000, 2)
        delay = self._client.backoff(call.tried) if call.may_resend(exc) else None
        self._log.warning(
            "http.call", method=call.method, **call.where, error=type(exc).__name__,
            duration_ms=ms, attempt=call.tried, retry_in=_round(delay),
        )
        return delay

    async def _after_response(
        self, call: retrying.Call, response: httpx.Response, ms: float
    ) -> tuple[float, bool] | None:
        """Log an answer; None to return it, else the seconds before trying again and whether
        the key's gate does that waiting. Raises ``RetryAfter`` when the server asks for more
        patience than this call may spend."""
        status = response.status_code
        pause = (
            ratelimit.retry_after(response.headers.get("retry-after"), datetime.now(UTC))
            if status in RETRY_AFTER_STATUSES
            else None
        )
        if pause is not None and call.limit is not None:
            until = await self._client.pause(call.limit, pause)
            self._log.warning(
                "http.paused", rate_key=call.limit.key, seconds=round(pause, 3),
                until=until.isoformat(), status=status,
            )
        remaining = call.deadline - asyncio.get_running_loop().time()
        delay = call.delay_after(status, pause, remaining, self._client.backoff)
        level = "info" if status < 500 and status != 429 else "warning"
        getattr(self._log, level)(
            "http.call", method=call.method, **call.where, status=status, duration_ms=ms,
            attempt=call.tried, retry_in=_round(delay),
        )
        if delay is None:
            if pause is not None:
                # The server asks for more patience than this call may spend waiting:
                # the execution is retried when the server allows.
                where = call.where
                raise errors.RetryAfter(
                    pause, f"{call.method} {where['host']}{where['path']} answered {status}; "
                    f"Retry-After {pause:g}s"
                )
            return None
        return delay, call.limit is not None and pause is not None

    def _decorate(self, request: httpx.Request, step: str | None, idempotency_key: str | bool) -> None:
        h = request.headers
        if "x-correlation-id" not in h and self.correlation_id:
            h["X-Correlation-Id"] = self.correlation_id
        if "idempotency-key" in h or idempotency_key is False:
            return
        if isinstance(idempotency_key, str):
            if not idempotency_key or len(idempotency_key) > 255:
                raise ValueError("idempotency_key= must be 1 to 255 characters")
            h["Idempotency-Key"] = idempotency_key
        elif request.method == "POST":
            h["Idempotency-Key"] = self.idempotency_key_for("POST", request.url, step)


class SyncSession:
    """``ctx.http.sync``: the same calls, blocking, for plain ``def`` handlers.

    Plain handlers run in a worker thread; each call runs on the worker's event loop and
    the thread waits for its answer. Calling it from the event loop itself (an ``async def``
    handler) would block that loop, so it raises instead: there, ``await ctx.http.get(...)``.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def head(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return self.request("HEAD", url, **kw)

    def options(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kw)

    def post(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def put(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return self.request("PUT", url, **kw)

    def patch(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return self.request("PATCH", url, **kw)

    def delete(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return self.request("DELETE", url, **kw)

    def request(self, method: str, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return self._run(self._session._request(method, url, STEP.get(), **kw))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._session._client.loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            coro.close()
            raise RuntimeError(
                "ctx.http.sync blocks, and this is an event loop: in an async handler use "
                "'await ctx.http.get(...)'"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


def _where(url: httpx.URL) -> dict[str, str]:
    """What a log line may say about a URL: host (and port) and path; never query or userinfo."""
    host = url.host if url.port is None else f"{url.host}:{url.port}"
    return {"host": host, "path": url.path}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
