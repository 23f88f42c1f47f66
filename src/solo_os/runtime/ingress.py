"""The HTTP face: ``POST /webhooks/{source}``, health, readiness and metrics (SPEC section 3).

A delivery is read against a hard size limit, verified over its raw bytes, parsed, typed,
keyed and validated, then handed to the group-commit writer; the 200 goes out only after the
transaction that holds the event and its executions has committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import orjson
import structlog
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.core import ids as _ids
from solo_os.core import records
from solo_os.observability import metrics, tracing
from solo_os.sources import _base as sources_base
from solo_os.sources import _decode as sources_decode
from solo_os.sources import _headers as sources_headers
from solo_os.store import ports

log = structlog.get_logger("solo_os.ingress")
MAX_KEY_CHARS = 200
_CORRELATION = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
# PostgreSQL's jsonb refuses \u0000 and unpaired surrogates that Python's json accepts.
_UNSTORABLE_JSON = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
RETRY_AFTER_SECONDS = "5"
ACK_STATUS = "x-solo-os-status"  # accepted/duplicate where the body is the provider's answer
ACK_EVENT_ID = "x-solo-os-event-id"


class _JSONResponse(Response):
    """A JSON answer with the head Starlette's ``Response`` would give it (the extra headers,
    then ``content-length``, then ``content-type``), made without its general header handling:
    one is made per delivery."""

    media_type = "application/json"

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
        raw.append((b"content-type", b"application/json"))
        self.raw_headers = raw


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return _JSONResponse(status, orjson.dumps(body), headers)


class Delivery(Protocol):
    """What the webhook route reads of a request: Starlette's ``Request`` or ``_WireRequest``."""

    @property
    def headers(self) -> Any: ...  # get, getlist and items, case-insensitive (sources.Headers)

    def stream(self) -> AsyncIterator[bytes]: ...


class _WireRequest:
    """A delivery read straight from ASGI: its headers indexed once (``WireHeaders``) and its
    body from ``receive``, as ``Request.stream`` reads it, without a ``Request`` per delivery."""

    __slots__ = ("_receive", "headers")

    def __init__(self, scope: Any, receive: Any) -> None:
        self.headers = sources_headers.WireHeaders(scope["headers"])
        self._receive = receive

    async def stream(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._receive()
            if message["type"] == "http.request":
                if body := message.get("body", b""):
                    yield body
                if not message.get("more_body", False):
                    return
            elif message["type"] == "http.disconnect":
                raise ClientDisconnect()


def correlation_id(request: Delivery, delivery_id: str | None) -> str:
    """From ``X-Correlation-Id``, else W3C ``traceparent``, else the delivery id, else new."""
    return pick_correlation_id(
        request.headers.get("x-correlation-id"), request.headers.get("traceparent"), delivery_id
    )


def pick_correlation_id(given: str | None, parent: str | None, delivery_id: str | None) -> str:
    """The correlation id from a given one, else a ``traceparent``'s trace id, else the
    delivery's id, else a new one (webhooks and queue messages alike)."""
    if given and _CORRELATION.match(given):
        return given
    if parent and (m := _TRACEPARENT.match(parent.strip().lower())) and m.group(1) != "0" * 32:
        return m.group(1)
    if delivery_id and _CORRELATION.match(delivery_id):
        return delivery_id
    return uuid.uuid4().hex


def storable_key(key: str) -> str:
    """Keys longer than the column (or an index entry) are stored as their digest."""
    if len(key) <= MAX_KEY_CHARS:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class IngressStore(ports.LifecyclePort, metrics.FigureSource, Protocol):
    """What the webhook port reads of the store: its migration state (``/readyz``) and the
    figures of the store-backed metrics. Deliveries are written through ``submit``."""


class Ingress:
    """The webhook endpoint's logic, independent of the ASGI framework around it."""

    def __init__(
        self,
        application: app_mod.App,
        submit: Callable[[records.NewEvent], Awaitable[records.IngestResult]],
        store: Callable[[], IngressStore],
        clock: Callable[[], datetime] = store_mod.utcnow,
        *,
        gauges: metrics.StoreGauges | None = None,
        serve_metrics: bool = True,
        unready: Callable[[], str | None] | None = None,
    ) -> None:
        self.app = application
        self.unready = unready  # why this process cannot do its work now (no worker loop), or None
        self.submit = submit
        self.store = store
        self.clock = clock  # received_at and signature ages; tests pass a controllable one
        self.default_limit = application.settings.max_body_bytes
        settings = application.settings
        # The store-backed gauges, cached: a scrape reads the store at most once per interval.
        self.gauges = gauges or metrics.StoreGauges(settings.metrics_refresh_seconds, clock)
        self.serve_metrics = serve_metrics  # False when SOLO_OS_METRICS_PORT serves them instead
        token = settings.admin_token
        self._metrics_token = (
            token.get_secret_value() if token is not None and settings.metrics_auth == "token" else None
        )
        self._counters: dict[tuple[str, str], Any] = {}  # (source, outcome) -> its counter

    def _count(self, name: str, outcome: str) -> None:
        """``metrics.deliveries`` of (source, outcome) plus one; the labelled child is looked
        up once (sources are the app's, outcomes a handful: the dict stays small)."""
        counter = self._counters.get((name, outcome))
        if counter is None:
            counter = self._counters[(name, outcome)] = metrics.deliveries.labels(name, outcome)
        counter.inc()

    async def webhook(self, request: Request) -> Response:
        return await self.deliver(request, request.path_params["source"])

    async def deliver(self, request: Delivery, name: str) -> Response:
        """Handle one delivery to source ``name``."""
        source = self.app.sources.get(name)
        if source is None or not source.http:  # a queue-fed source has no route
            return _json(404, {"error": "unknown_source"})
        limit = source.max_body_bytes or self.default_limit
        body = await _read_limited(request, limit)
        if body is None:
            self._count(name, "too_large")
            log.warning("webhook.too_large", source=name, limit=limit)
            return _json(413, {"error": "payload_too_large"})
        received_at = self.clock()
        with tracing.span(
            "webhook.receive",
            parent=request.headers.get("traceparent"),
            kind=trace.SpanKind.SERVER,
            attributes={"solo_os.source": name},
        ) as span:
            try:
                source.authenticate(request.headers, body, received_at.timestamp())
            except errors.SignatureError as exc:
                self._count(name, "invalid_signature")
                log.warning("webhook.invalid_signature", source=name, reason=exc.reason)
                span.set_attribute("solo_os.outcome", "invalid_signature")
                return _json(401, {"error": "invalid_signature"})
            # No span (no tracer provider, no traceparent): no trace context to store or mark.
            traced = span is not trace.INVALID_SPAN
            return await self._accept(request, name, source, body, received_at, traced)

    async def _accept(
        self,
        request: Delivery,
        name: str,
        source: sources_base.Source,
        body: bytes,
        received_at: datetime,
        traced: bool,
    ) -> Response:
        built = build_event(
            self.app, name, source, request.headers, body, received_at,
            lambda key: correlation_id(request, key),
            trace_parent=tracing.current_traceparent() if traced else None,
        )
        if isinstance(built, dict):
            return _json(200, built)  # a provider's handshake (e.g. Slack url_verification)
        event = built
        # The fields every line of this delivery carries, in this order (a bound logger's).
        fields = {"source": name, "event_type": event.type, "correlation_id": event.correlation_id}
        try:
            result = await self.submit(event)
        except Exception as exc:
            # Whatever went wrong while storing, the event is not known to be stored: the
            # provider must deliver it again, so the answer is 503, never a 2xx (nor a 500
            # that some providers treat as final).
            self._count(name, "unavailable")
            if isinstance(exc, errors.StoreError):
                log.error("webhook.unavailable", **fields, error=str(exc))
            else:
                log.exception("webhook.unavailable", **fields, error=f"{type(exc).__name__}: {exc}")
            return _json(503, {"error": "unavailable"}, {"Retry-After": RETRY_AFTER_SECONDS})
        self._count(name, result.outcome)
        event_id = str(result.event_id)
        if traced:
            trace.get_current_span().set_attributes(
                {"solo_os.outcome": result.outcome, "solo_os.event_id": event_id}
            )
        if result.outcome == "rejected":
            log.warning("webhook.rejected", **fields, event_id=event_id, errors=len(result.errors or []))
            return _json(400, {"error": "invalid_payload", "details": result.errors or []})
        # Where the provider's protocol wants a specific answer to a stored event (Discord: an
        # interaction response), that is the body; the status code is the same 200, and the
        # outcome and event id travel in headers instead.
        ack = source.acknowledgement(event.type)
        if ack is not None:
            log.info(f"webhook.{result.outcome}", **fields, event_id=event_id, executions=result.executions)
            return _json(200, ack, {ACK_STATUS: result.outcome, ACK_EVENT_ID: event_id})
        if result.outcome == "duplicate":
            log.info("webhook.duplicate", **fields, event_id=event_id)
            return _json(200, {"status": "duplicate", "event_id": event_id})
        log.info("webhook.accepted", **fields, event_id=event_id, executions=result.executions)
        return _json(200, {"status": "accepted", "event_id": event_id, "executions": result.executions})

    # --- operations endpoints ---------------------------------------------------------------

    async def healthz(self, _request: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        try:
            current = await self.store().current_revision()
        except errors.StoreError:
            return _json(503, {"status": "unavailable", "store": "unreachable"})
        head = self.store().head_revision()
        if current != head:
            return _json(503, {"status": "unavailable", "migrations": {"current": current, "head": head}})
        if self.unready is not None and (reason := self.unready()) is not None:
            return _json(503, {"status": "unavailable", "worker": reason})
        return _json(200, {"status": "ready", "migrations": {"current": current, "head": head}})

    async def metrics(self, request: Request) -> Response:
        status, body, headers = await metrics.scrape(
            self.gauges, self.store, request.headers, self._metrics_token
        )
        return Response(body, status, headers=headers)

    def routes(self) -> list[Route]:
        return [
            Route("/webhooks/{source}", self.webhook, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            *([Route("/metrics", self.metrics, methods=["GET"])] if self.serve_metrics else []),
        ]


def build_event(
    application: app_mod.App,
    name: str,
    source: sources_base.Source,
    headers: Any,
    body: bytes,
    received_at: datetime,
    correlate: Callable[[str | None], str],
    *,
    key: str | None = None,
    trace_parent: str | None = None,
) -> records.NewEvent | dict[str, Any]:
    """A verified delivery as the event to store (accepted or rejected, with its executions).

    ``headers`` is a case-insensitive mapping with ``getlist`` (Starlette's ``Headers`` or
    ``sources.DictHeaders``). Returns a dict instead where the source answers the request
    itself (a handshake, not an event). ``key`` forces the idempotency key (revalidation of a
    stored event keeps the key it was stored under). Used by the webhook route and by
    ``events revalidate``, so both judge a delivery the same way.
    """
    problems: list[dict[str, Any]] = []
    document: Any = None
    stored_text: str | None = None
    try:  # JSON through solo_os.core.json_decoder (its depth limit), or a form (SPEC section 2)
        document = source.decode(headers, body)
        stored_text = _payload_text(headers, body, document)
    except errors.PayloadError as exc:
        problems.extend(exc.details)
    if not problems and (reply := source.challenge(headers, document)) is not None:
        return reply
    event_type, raw_key = _type_and_key(source, headers, document, problems)
    if key is None:
        key = storable_key(raw_key) if raw_key else sources_base.digest_key(body)
    handlers: tuple[app_mod.Handler, ...] = ()
    if not problems:
        problems.extend(application.validate(name, event_type, document))
        handlers = application.handlers_for(name, event_type)
    return records.NewEvent(
        id=_ids.uuid7(),
        source=name,
        idempotency_key=key,
        type=event_type[:255],
        status="rejected" if problems else "accepted",
        payload=None if problems else stored_text,
        body=body,
        headers=source.stored_headers(headers, application.store_headers),
        errors=problems or None,
        correlation_id=correlate(raw_key),
        received_at=received_at,
        executions=tuple(
            records.NewExecution(
                _ids.uuid7(), h.name, application.policy(h).max_attempts or 1,
                h.flow_mark(application.sources[name].payload(document)),
            )
            for h in handlers
        ),
        trace_parent=trace_parent,
        cancels=application.cancel_rules(name, event_type, document) if not problems else (),
    )


def _type_and_key(
    source: sources_base.Source, headers: Any, document: Any, problems: list[dict[str, Any]]
) -> tuple[str, str | None]:
    """The delivery's event type and the source's idempotency key (None when it has none);
    what is wrong with them is added to ``problems``."""
    event_type = ""
    raw_key: str | None = None
    if not problems:
        try:
            event_type = source.event_type(headers, document) or ""
            raw_key = source.idempotency_key(headers, document)
        except errors.PayloadError as exc:
            problems.extend(exc.details)
        if not event_type and not problems:
            problems.append({"loc": ["type"], "msg": "the delivery names no event type", "type": "missing"})
    else:
        # Not JSON: a key carried in a header still identifies the delivery, so its redelivery
        # meets the stored rejected event instead of a second one.
        with contextlib.suppress(errors.PayloadError):
            raw_key = source.idempotency_key(headers, None)
    return event_type, raw_key


def _payload_text(headers: Any, body: bytes, document: Any) -> str | None:
    """The JSON text stored as the event's payload, or None where the raw body must be read.

    A JSON body is stored as sent, unless PostgreSQL's jsonb could not hold it (the worker then
    reads the body). A form is stored as the document it decoded to: the worker reads it back
    as JSON, so a form field jsonb cannot hold (a NUL) makes it invalid instead.
    """
    if not sources_decode.is_form(headers):
        return None if _UNSTORABLE_JSON.search(body) else body.decode("utf-8")
    try:
        text: bytes | None = orjson.dumps(document)
    except TypeError:  # orjson's JSONEncodeError: a lone surrogate
        text = None
    if text is None or _UNSTORABLE_JSON.search(text):
        raise errors.PayloadError(
            [{"loc": ["body"], "msg": "a form field holds a NUL character or a lone surrogate",
              "type": "value_error"}]
        )
    return text.decode("utf-8")


async def _read_limited(request: Delivery, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit`` (the rest is not read)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return None
        except ValueError:
            pass  # the server rejects a malformed Content-Length itself
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _FastWebhooks:
    """``POST /webhooks/{source}`` straight to the ingress; everything else to Starlette.

    The webhook route is the hot path: going around Starlette's middleware stack and router
    saves a noticeable share of the per-request CPU. Other routes keep the full stack.
    """

    PREFIX = "/webhooks/"

    def __init__(self, ingress: Ingress, app: Starlette) -> None:
        self.ingress = ingress
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            # "/webhooks/billing/" is served like "/webhooks/billing": providers do not follow
            # a redirect on POST.
            name = path[len(self.PREFIX):].removesuffix("/")
            if path.startswith(self.PREFIX) and name and "/" not in name:
                try:
                    response = await self.ingress.deliver(_WireRequest(scope, receive), name)
                except Exception:  # a bug: answer like Starlette's error middleware would
                    log.exception("webhook.error", path=path)
                    response = _json(500, {"error": "internal"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def asgi(
    ingress: Ingress, lifespan: Any = None, extra_routes: Sequence[BaseRoute] = ()
) -> Any:
    """The ASGI app: the ingress routes, then ``extra_routes`` (the admin API and dashboard)."""
    return _FastWebhooks(
        ingress, Starlette(routes=[*ingress.routes(), *extra_routes], lifespan=lifespan)
    )


__all__ = ["Ingress", "asgi", "build_event", "correlation_id", "pick_correlation_id"]
