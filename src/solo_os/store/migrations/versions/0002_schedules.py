"""Schedules, their fires (one unique row per schedule and fire time), and the alert outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from solo_os.store._schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OPEN_FIRE = "status = 'queued' OR (status = 'fired' AND result IS NULL)"


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("paused_at", UTCDateTime, nullable=True),
        sa.Column("active_since", UTCDateTime, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("alerted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "schedule_fires",
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
    )
    op.create_index("ix_schedule_fires_execution", "schedule_fires", ["execution_id"])
    open_fire = sa.text(OPEN_FIRE)
    op.create_index(
        "ix_schedule_fires_open", "schedule_fires", ["schedule", "fire_at"],
        postgresql_where=open_fire, sqlite_where=open_fire,
    )
    op.create_table(
        "alerts",
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
    )
    op.create_index("ix_alerts_key_closed", "alerts", ["key", "closed_at"])
    op.create_index("ix_alerts_created", "alerts", ["created_at"])
    op.create_table(
        "alert_occurrences",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column(
            "alert_id", sa.Uuid, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("details", JSON, nullable=True),
        sa.UniqueConstraint("source", name="uq_alert_occurrences_source"),
    )
    op.create_index("ix_alert_occurrences_alert", "alert_occurrences", ["alert_id"])
    op.create_index("ix_alert_occurrences_at", "alert_occurrences", ["at"])
    op.create_table(
        "alert_deliveries",
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
    )
    op.create_index(
        "ix_alert_deliveries_status_due", "alert_deliveries", ["status", "next_attempt_at"]
    )
    op.create_table(
        "alert_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("cursor_at", UTCDateTime, nullable=False),
        sa.Column("cursor_id", sa.Uuid, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alert_state")
    op.drop_table("alert_deliveries")
    op.drop_table("alert_occurrences")
    op.drop_table("alerts")
    op.drop_table("schedule_fires")
    op.drop_table("schedules")
