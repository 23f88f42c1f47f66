"""OpenTelemetry traces: spans for ingress, executions, steps and outbound calls.

Only the OpenTelemetry *API* is a dependency; without an SDK every span is a no-op costing a
few microseconds. ``pip install 'solo-os[otel]'`` adds the SDK and the OTLP exporter, and
``configure()`` sets them up from the standard ``OTEL_*`` variables. The ingress span's
context is stored with each execution (``executions.trace_parent``), so an execution's span
joins the trace of the webhook that caused it, across the queue and across processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_getter = DefaultGetter()
tracer = trace.get_tracer("solo_os")


def configure(service: str) -> bool:
    """Install the SDK's tracer provider with an OTLP exporter when ``OTEL_*`` asks for it.

    Returns True when traces are exported. Does nothing when a provider is already set (the
    user's own set-up wins), when ``OTEL_SDK_DISABLED`` is true, or without the SDK.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    wanted = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if not wanted and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    if wanted == "none":
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return False
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return True
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def extract(traceparent: str | None) -> otel_context.Context | None:
    """The remote parent context named by a W3C ``traceparent`` (None when absent or invalid)."""
    if not traceparent:
        return None
    ctx = _propagator.extract({"traceparent": traceparent}, getter=_getter)
    span_ctx = trace.get_current_span(ctx).get_span_context()
    return ctx if span_ctx.is_valid else None


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span, to store or send on (None when not recording)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


NOT_RECORDING: AbstractContextManager[trace.Span] = nullcontext(trace.INVALID_SPAN)
"""The shared no-op span ``span`` returns when there is nothing to record."""


def idle(parent: str | None) -> bool:
    """Whether ``span(..., parent=parent)`` would be the no-op ``NOT_RECORDING``: a hot path
    asks first, and does not build the span's name and attributes for nothing."""
    return parent is None and _no_provider()


def span(
    name: str,
    *,
    parent: str | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: dict[str, Any] | None = None,
) -> AbstractContextManager[trace.Span]:
    """A span (child of ``parent`` when given, else of the current span).

    With no tracer provider set (no SDK: OpenTelemetry's proxy is still the global one) and no
    remote parent to carry on, there is nothing to record or propagate: the span is a shared
    no-op context, without the API's per-span objects (about a tenth of a worker's CPU per
    no-op execution before). A provider set later, by ``configure`` or the user, takes effect
    on the next span.
    """
    if idle(parent):
        return NOT_RECORDING
    return _started(name, parent, kind, attributes)


def _no_provider() -> bool:
    """Whether spans have nowhere to go: no provider set, and ``tracer`` is still the API's."""
    return isinstance(tracer, trace.ProxyTracer) and isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider
    )


@contextmanager
def _started(
    name: str, parent: str | None, kind: trace.SpanKind, attributes: dict[str, Any] | None
) -> Iterator[trace.Span]:
    with tracer.start_as_current_span(
        name, context=extract(parent), kind=kind, attributes=attributes
    ) as s:
        yield s


def add_ids(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` of the current span, when recording."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event
