"""Events, executions, attempts and steps.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from solo_os.store._schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
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
    )
    op.create_index("ix_events_received_at", "events", ["received_at"])
    op.create_table(
        "executions",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("event_id", sa.Uuid, sa.ForeignKey("events.id", ondelete="CASCADE")),
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
    )
    pending = sa.text("status = 'pending'")
    running = sa.text("status = 'running'")
    op.create_index(
        "ix_executions_due", "executions", ["run_after"],
        postgresql_where=pending, sqlite_where=pending,
    )
    op.create_index(
        "ix_executions_leases", "executions", ["lease_expires_at"],
        postgresql_where=running, sqlite_where=running,
    )
    op.create_index("ix_executions_event", "executions", ["event_id"])
    op.create_index("ix_executions_status_updated", "executions", ["status", "updated_at"])
    op.create_table(
        "attempts",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column(
            "execution_id", sa.Uuid,
            sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False,
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
    )
    op.create_index("ix_attempts_ended_at", "attempts", ["ended_at"])  # stats, latest failures
    op.create_table(
        "steps",
        sa.Column(
            "execution_id", sa.Uuid,
            sa.ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True,
        ),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("steps")
    op.drop_table("attempts")
    op.drop_table("executions")
    op.drop_table("events")
