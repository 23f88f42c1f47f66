"""``ctx.http``: outbound HTTP for handlers, with shared rate limits, retries and idempotency keys.

One ``Client`` per worker process holds one ``httpx.AsyncClient`` (a connection pool) and one
``_Gate`` per rate-limited key; every attempt gets a light ``Session`` bound to its execution
(``ctx.http``). Plain ``def`` handlers run in a worker thread and call ``ctx.http.sync``, which
runs the same async code on the worker's event loop and blocks the thread for the answer.

A call to a rate-limited key first takes a token from the key's bucket in the store, shared by
every process. Concurrent callers in one process wait on the key's gate, and the gate takes
tokens for all of them in one store round trip, so the store sees one transaction per batch
of calls, not one per call. A token is never held back for later: tokens are taken only for
callers that are waiting now, so the declared rate holds across processes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import random
import time
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import httpx
import structlog
from opentelemetry import trace

from solo_os import errors
from solo_os.core import ratelimit
from solo_os.observability import tracing
from solo_os.outbound import options as options_mod

_log = structlog.get_logger("solo_os.http")
T = TypeVar("T")

STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar("solo_os_step", default=None)
"""The name of the durable step running in this context (set by ``Context.step``)."""

IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d3c8e-4b7a-5e2f-9c1d-0a7b3e5f2d91")
"""uuid5 namespace of derived ``Idempotency-Key`` values (fixed: changing it changes every key)."""

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors raised before the request left this host: always safe to try again."""
RETRY_AFTER_STATUSES = frozenset({429, 503})
USER_AGENT = "solo-os"


class Buckets(Protocol):
    """The store's side of rate limits (``store.Store`` implements it)."""

    async def take_tokens(
        self, key: str, want: int, rate: float, capacity: float
    ) -> ratelimit.Grant: ...

    async def pause_key(self, key: str, seconds: float, capacity: float) -> datetime: ...


@dataclass
class _Waiter:
    future: asyncio.Future[None]
    deadline: float  # loop time


class _Gate:
    """The callers of one key in this process: one pump takes tokens for all of them.

    The pump asks the store for as many tokens as callers wait, hands them out in arrival
    order, and when short sleeps until the next token can be free (the store says when), so
    a starved key costs one store round trip per refill, not one per caller. A caller that
    could not be served by its deadline even if every coming token were its own is failed at
    once with ``RateLimited``.
    """

    def __init__(self, limit: ratelimit.Limit, buckets: Buckets) -> None:
        self.limit = limit
        self._buckets = buckets
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._pump: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._next_free = 0.0  # loop time before which the store has no token for us

    async def acquire(self, deadline: float) -> None:
        """Return once a token is ours; raise ``RateLimited`` if none can be by ``deadline``."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), deadline)
        self._waiters.append(waiter)
        self._arrived.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run(), name=f"solo-os-ratelimit-{self.limit.key}")
        await waiter.future

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        for w in self._waiters:
            if not w.future.done():
                w.future.set_exception(errors.RateLimited(1.0, self.limit.key))
        self._waiters.clear()

    def _live(self) -> list[_Waiter]:
        live = [w for w in self._waiters if not w.future.done()]
        self._waiters = collections.deque(live)
        return live

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        rate, capacity, key = self.limit.per_second, self.limit.capacity, self.limit.key
        while live := self._live():
            if loop.time() >= self._next_free:
                try:
                    grant = await self._buckets.take_tokens(key, len(live), rate, capacity)
                except Exception as exc:
                    # Tokens exist only in the store: without it, nobody may call.
                    self._fail_all(exc)
                    return
                given = 0
                while given < grant.granted and self._waiters:
                    w = self._waiters.popleft()
                    if w.future.done():
                        continue  # cancelled meanwhile; its token is spent (errs on the safe side)
                    w.future.set_result(None)
                    given += 1
                if grant.granted >= len(live):
                    continue  # everyone served; newcomers (if any) are asked for at once
                self._next_free = loop.time() + grant.wait
            now = loop.time()
            ahead = max(0.0, self._next_free - now)
            for position, w in enumerate(self._live()):
                best = ahead + position / rate
                if now + best > w.deadline:
                    w.future.set_exception(errors.RateLimited(max(best, 0.001), key))
            if not self._live():
                return
            # Sleep until a token may be free, or until a newcomer needs its deadline judged.
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(0.001, self._next_free - loop.time()))

    def _fail_all(self, exc: Exception) -> None:
        for w in self._live():
            # One exception object per caller: a shared one would collect every traceback.
            cls = type(exc) if isinstance(exc, errors.StoreError) else errors.StoreError
            error = cls(f"rate limit {self.limit.key!r}: {exc}")
            error.__cause__ = exc
            w.future.set_exception(error)
        self._waiters.clear()


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
        self._gates: dict[str, _Gate] = {}
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Open the connection pool on the running loop (the loop ``ctx.http.sync`` uses)."""
        if self._http is not None:
            return
        self._loop = asyncio.get_running_loop()
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
            gate = self._gates[limit.key] = _Gate(limit, self._store())
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
        keyed = "idempotency-key" in request.headers
        replayable = isinstance(request.stream, httpx.ByteStream)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_budget
        if self._deadline is not None:
            deadline = min(deadline, self._deadline)
        where = _where(request.url)
        own_traceparent = "traceparent" in request.headers
        tried = 0
        while True:
            if limit is not None:
                try:
                    await self._client.acquire(limit, deadline)
                except errors.RateLimited as exc:
                    self._log.info(
                        "http.rate_limited", method=method, **where, rate_key=limit.key,
                        retry_in=round(exc.seconds, 3),
                    )
                    raise
            tried += 1
            t0 = time.perf_counter()
            try:
                with tracing.span(
                    f"HTTP {method}",
                    kind=trace.SpanKind.CLIENT,
                    attributes={
                        "http.request.method": method,
                        "server.address": request.url.host,
                        "url.path": request.url.path,
                        "http.request.resend_count": tried - 1,
                    },
                ) as span:
                    if not own_traceparent:
                        traceparent = tracing.current_traceparent()
                        if traceparent:
                            request.headers["traceparent"] = traceparent
                    response = await client.send(request, follow_redirects=follow_redirects)
                    span.set_attribute("http.response.status_code", response.status_code)
            except httpx.TransportError as exc:
                ms = round((time.perf_counter() - t0) * 1000, 2)
                safe = isinstance(exc, NOT_SENT) or method in IDEMPOTENT_METHODS or keyed
                again = tried < tries and replayable and safe
                delay = self._client.backoff(tried) if again else None
                self._log.warning(
                    "http.call", method=method, **where, error=type(exc).__name__,
                    duration_ms=ms, attempt=tried, retry_in=_round(delay),
                )
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            ms = round((time.perf_counter() - t0) * 1000, 2)
            status = response.status_code
            pause = (
                ratelimit.retry_after(response.headers.get("retry-after"), datetime.now(UTC))
                if status in RETRY_AFTER_STATUSES
                else None
            )
            if pause is not None and limit is not None:
                until = await self._client.pause(limit, pause)
                self._log.warning(
                    "http.paused", rate_key=limit.key, seconds=round(pause, 3),
                    until=until.isoformat(), status=status,
                )
            delay = self._retry_delay(
                status, pause, tried, tries, replayable, method, keyed, deadline - loop.time()
            )
            level = "info" if status < 500 and status != 429 else "warning"
            getattr(self._log, level)(
                "http.call", method=method, **where, status=status, duration_ms=ms,
                attempt=tried, retry_in=_round(delay),
            )
            if delay is None:
                if pause is not None:
                    # The server asks for more patience than this call may spend waiting:
                    # the execution is retried when the server allows.
                    raise errors.RetryAfter(
                        pause, f"{method} {where['host']}{where['path']} answered {status}; "
                        f"Retry-After {pause:g}s"
                    )
                return response
            await response.aclose()
            if limit is None or pause is None:
                await asyncio.sleep(delay)  # a keyed call waits for the pause at its gate

    def _retry_delay(
        self,
        status: int,
        pause: float | None,
        tried: int,
        tries: int,
        replayable: bool,
        method: str,
        keyed: bool,
        budget: float,
    ) -> float | None:
        """Seconds to wait before trying again, or None to stop here."""
        if tried >= tries or not replayable:
            return None
        if pause is not None:
            return pause if pause <= budget else None
        retryable = status == 429 or (status >= 500 and status != 501)
        if not retryable:
            return None
        if status != 429 and not (method in IDEMPOTENT_METHODS or keyed):
            return None
        return self._client.backoff(tried)

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
