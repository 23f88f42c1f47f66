"""Prometheus metrics. Per-process counters; queue depth is read from the store at scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

registry = CollectorRegistry(auto_describe=True)

deliveries = Counter(
    "solo_os_deliveries_total",
    "Webhook deliveries by source and outcome",
    ["source", "outcome"],
    registry=registry,
)
executions = Counter(
    "solo_os_executions_total",
    "Finished attempts by handler and outcome",
    ["handler", "outcome"],
    registry=registry,
)
attempt_seconds = Histogram(
    "solo_os_attempt_duration_seconds",
    "How long one attempt of a handler ran",
    ["handler"],
    registry=registry,
)
receive_to_start = Histogram(
    "solo_os_receive_to_start_seconds",
    "From the delivery's arrival to its handler's first start",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=registry,
)
cron_lag = Histogram(
    "solo_os_cron_lag_seconds",
    "From a fire's scheduled time to its execution being created",
    ["schedule"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=registry,
)
alert_outbox = Gauge(
    "solo_os_alert_outbox",
    "Alert deliveries not sent yet, by status (from the store)",
    ["status"],
    registry=registry,
)
queue_depth = Gauge(
    "solo_os_queue_depth", "Executions by status (from the store)", ["status"], registry=registry
)
