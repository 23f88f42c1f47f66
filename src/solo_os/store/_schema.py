"""The tables, as SQLAlchemy Core metadata. Migrations (``migrations/``) create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes: ``timestamptz`` on PostgreSQL, naive-UTC text on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSON: Any = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID: Any = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.Column("type", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("payload", JSON, nullable=True),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("headers", JSON, nullable=True),
    sa.Column("errors", JSON, nullable=True),
    sa.Column("correlation_id", sa.String(255), nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("source", "idempotency_key", name="uq_events_source_key"),
    sa.Index("ix_events_received_at", "received_at"),
)

executions = sa.Table(
    "executions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("event_id", sa.Uuid, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=True),
    sa.Column("handler", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("run_after", UTCDateTime, nullable=False),
    sa.Column("lease_expires_at", UTCDateTime, nullable=True),
    sa.Column("worker_id", sa.String(255), nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("correlation_id", sa.String(255), nullable=False),
    sa.Column("scheduled_at", UTCDateTime, nullable=True),
    sa.Column("trace_parent", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("losses", sa.Integer, nullable=False, server_default="0"),  # migration 0004
    sa.Column("result", JSON, nullable=True),  # migration 0006: the handler's return value
    sa.Column("parent_id", sa.Uuid, nullable=True),  # migration 0006: ctx.invoke's parent
    # Flow control (migration 0007): a non-null flow_key marks an execution the flow claim
    # takes (store/_flow.py); the plain claim's partial index leaves those out.
    sa.Column("flow_key", sa.String(512), nullable=True),
    sa.Column("throttle_key", sa.String(512), nullable=True),
    sa.Column("priority", sa.Integer, nullable=True),
    sa.Column("group_key", sa.String(512), nullable=True),  # singleton / debounce / batch
    sa.Index(
        "ix_executions_due",
        "run_after",
        postgresql_where=sa.text("status = 'pending' AND flow_key IS NULL"),
        sqlite_where=sa.text("status = 'pending' AND flow_key IS NULL"),
    ),
    sa.Index(
        "ix_executions_flow_due",
        "created_at",
        "id",
        postgresql_where=sa.text("status = 'pending' AND flow_key IS NOT NULL"),
        sqlite_where=sa.text("status = 'pending' AND flow_key IS NOT NULL"),
    ),
    sa.Index(  # flow executions waiting for a retry: their key waits with them (FIFO)
        "ix_executions_flow_retry",
        "run_after",
        postgresql_where=sa.text("status = 'pending' AND flow_key IS NOT NULL AND attempts > 0"),
        sqlite_where=sa.text("status = 'pending' AND flow_key IS NOT NULL AND attempts > 0"),
    ),
    sa.Index(
        "ix_executions_flow_running",
        "flow_key",
        postgresql_where=sa.text("status = 'running' AND flow_key IS NOT NULL"),
        sqlite_where=sa.text("status = 'running' AND flow_key IS NOT NULL"),
    ),
    sa.Index(
        "ix_executions_group",
        "group_key",
        "status",
        postgresql_where=sa.text("group_key IS NOT NULL"),
        sqlite_where=sa.text("group_key IS NOT NULL"),
    ),
    sa.Index(
        "ix_executions_leases",
        "lease_expires_at",
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    ),
    sa.Index("ix_executions_event", "event_id"),
    sa.Index(  # migrations 0004, 0009 (flow-controlled ones too)
        "ix_executions_lost",
        "run_after",
        postgresql_where=sa.text("status = 'pending' AND losses > 0"),
        sqlite_where=sa.text("status = 'pending' AND losses > 0"),
    ),
    sa.Index("ix_executions_status_updated", "status", "updated_at"),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", BIGID, primary_key=True, autoincrement=True),
    sa.Column(
        "execution_id", sa.Uuid, sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("worker_id", sa.String(255), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error_type", sa.String(255), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("traceback", sa.Text, nullable=True),
    sa.UniqueConstraint("execution_id", "attempt", name="uq_attempts_execution_attempt"),
    sa.Index("ix_attempts_ended_at", "ended_at"),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column(
        "execution_id",
        sa.Uuid,
        sa.ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("result", JSON, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("paused_until", UTCDateTime, nullable=True),
)

# Failed admin sign-ins per client, shared by every process (migration 0004).
signin_throttle = sa.Table(
    "signin_throttle",
    metadata,
    sa.Column("client", sa.String(255), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_signin_throttle_updated", "updated_at"),
)

# --- schedules and alerts (migration 0002) ---------------------------------------------------

_OPEN_FIRE = "status = 'queued' OR (status = 'fired' AND result IS NULL)"

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("paused_at", UTCDateTime, nullable=True),
    sa.Column("active_since", UTCDateTime, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("alerted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

schedule_fires = sa.Table(
    "schedule_fires",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("schedule", sa.String(255), nullable=False),
    sa.Column("fire_at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("execution_id", sa.Uuid, nullable=True),
    sa.Column("result", sa.String(16), nullable=True),
    sa.Column("missed_from", UTCDateTime, nullable=True),
    sa.Column("missed_count", sa.Integer, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("schedule", "fire_at", name="uq_schedule_fires_schedule_fire_at"),
    sa.Index("ix_schedule_fires_execution", "execution_id"),
    sa.Index(
        "ix_schedule_fires_open",
        "schedule",
        "fire_at",
        postgresql_where=sa.text(_OPEN_FIRE),
        sqlite_where=sa.text(_OPEN_FIRE),
    ),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("open_key", sa.String(255), nullable=True),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("first_at", UTCDateTime, nullable=False),
    sa.Column("last_at", UTCDateTime, nullable=False),
    sa.Column("not_before", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime, nullable=True),
    sa.Column("samples", JSON, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("open_key", name="uq_alerts_open_key"),
    sa.Index("ix_alerts_key_closed", "key", "closed_at"),
    sa.Index("ix_alerts_created", "created_at"),
)

alert_occurrences = sa.Table(
    "alert_occurrences",
    metadata,
    sa.Column("id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(255), nullable=False),
    sa.Column("alert_id", sa.Uuid, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("details", JSON, nullable=True),
    sa.UniqueConstraint("source", name="uq_alert_occurrences_source"),
    sa.Index("ix_alert_occurrences_alert", "alert_id"),
    sa.Index("ix_alert_occurrences_at", "at"),
)

alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    sa.Column(
        "alert_id", sa.Uuid, sa.ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("channel", sa.String(100), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_expires_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_alert_deliveries_status_due", "status", "next_attempt_at"),
)

alert_state = sa.Table(
    "alert_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("cursor_at", UTCDateTime, nullable=False),
    sa.Column("cursor_id", sa.Uuid, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# --- search and handler logs (migration 0005) ------------------------------------------------
# On PostgreSQL, 0005 also creates ix_events_payload_trgm (pg_trgm GIN over payload::text) when
# the extension is available; it is not declared here because it depends on the extension.

sa.Index("ix_events_idempotency_key", events.c.idempotency_key)
sa.Index("ix_events_correlation", events.c.correlation_id)
sa.Index("ix_executions_correlation", executions.c.correlation_id)

execution_logs = sa.Table(
    "execution_logs",
    metadata,
    sa.Column("id", BIGID, primary_key=True, autoincrement=True),
    sa.Column(
        "execution_id", sa.Uuid, sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("fields", JSON, nullable=True),
    sa.UniqueConstraint("execution_id", "attempt", "seq", name="uq_execution_logs_line"),
)

# --- durable workflows (migration 0006) ------------------------------------------------------
# One row per ctx.sleep / wait_for_event / send / invoke of an execution, by name: its memo
# (status, result) and, while ``waiting``, what it waits for. A wait is found from an event by
# (source, type, its sorted match paths, a digest of the match values): one index lookup.

_OPEN_WAIT = "status = 'waiting' AND kind = 'wait'"

workflow_calls = sa.Table(
    "workflow_calls",
    metadata,
    sa.Column(
        "execution_id", sa.Uuid, sa.ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # sleep wait send invoke cancel
    sa.Column("status", sa.String(16), nullable=False),  # waiting done timed_out
    sa.Column("wake_at", UTCDateTime, nullable=True),
    sa.Column("source", sa.String(100), nullable=True),
    sa.Column("type", sa.String(255), nullable=True),
    sa.Column("match", JSON, nullable=True),
    sa.Column("match_paths", sa.String(1000), nullable=True),
    sa.Column("match_key", sa.String(64), nullable=True),
    sa.Column("result", JSON, nullable=True),
    sa.Column("event_id", sa.Uuid, nullable=True),
    sa.Column("child_id", sa.Uuid, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Index(
        "ix_workflow_calls_wait", "source", "type", "match_paths", "match_key",
        postgresql_where=sa.text(_OPEN_WAIT), sqlite_where=sa.text(_OPEN_WAIT),
    ),
    sa.Index(
        "ix_workflow_calls_child", "child_id",
        postgresql_where=sa.text("child_id IS NOT NULL"),
        sqlite_where=sa.text("child_id IS NOT NULL"),
    ),
)

# The few distinct path sets open waits use per (source, type): ingest reads these, then looks
# each event up by key. Rows stay (a path set is tiny); an unused one costs one lookup.
workflow_match_sets = sa.Table(
    "workflow_match_sets",
    metadata,
    sa.Column("source", sa.String(100), primary_key=True),
    sa.Column("type", sa.String(255), primary_key=True),
    sa.Column("match_paths", sa.String(1000), primary_key=True),
)

sa.Index(
    "ix_executions_waiting", executions.c.run_after,
    postgresql_where=sa.text("status = 'waiting'"), sqlite_where=sa.text("status = 'waiting'"),
)
sa.Index(
    "ix_executions_parent", executions.c.parent_id,
    postgresql_where=sa.text("parent_id IS NOT NULL"),
    sqlite_where=sa.text("parent_id IS NOT NULL"),
)

# Flow control (migration 0007): per-key state of throttles, rate limits and debounces (the
# recent start/arrival times, or a debounce chain's first arrival), one row per key.
flow_state = sa.Table(
    "flow_state",
    metadata,
    sa.Column("key", sa.String(600), primary_key=True),
    sa.Column("times", JSON, nullable=False),  # epoch seconds, oldest first
    sa.Column("until", UTCDateTime, nullable=True),  # a throttled key waits until then
    sa.Index("ix_flow_state_until", "until"),
)

# The events of one batch execution (Batch): each event is in exactly one batch per handler.
batch_items = sa.Table(
    "batch_items",
    metadata,
    sa.Column(
        "execution_id", sa.Uuid, sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("event_id", sa.Uuid, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    sa.Column("handler", sa.String(255), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("event_id", "handler", name="pk_batch_items"),
    sa.Index("ix_batch_items_execution", "execution_id", "position"),
)
