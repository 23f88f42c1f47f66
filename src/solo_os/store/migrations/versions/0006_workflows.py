"""Durable workflows: the ``waiting`` state, stored return values, and ``workflow_calls``.

- ``executions.result`` holds a handler's return value (JSON); ``executions.parent_id`` links a
  child started by ``ctx.invoke`` to its parent.
- ``workflow_calls`` holds each ``ctx.sleep`` / ``wait_for_event`` / ``send`` / ``invoke`` by
  name (memo and what a waiting execution waits for); ``workflow_match_sets`` the path sets of
  open waits per (source, type), so ingest finds waiters by index lookups.
- Partial indexes: waiting executions by wake time, open waits by match key, children.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from solo_os.store._schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_OPEN_WAIT = "status = 'waiting' AND kind = 'wait'"


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("result", JSON, nullable=True))
        batch.add_column(sa.Column("parent_id", sa.Uuid, nullable=True))
    op.create_index(
        "ix_executions_waiting", "executions", ["run_after"],
        postgresql_where=sa.text("status = 'waiting'"), sqlite_where=sa.text("status = 'waiting'"),
    )
    op.create_index(
        "ix_executions_parent", "executions", ["parent_id"],
        postgresql_where=sa.text("parent_id IS NOT NULL"),
        sqlite_where=sa.text("parent_id IS NOT NULL"),
    )
    op.create_table(
        "workflow_calls",
        sa.Column(
            "execution_id", sa.Uuid, sa.ForeignKey("executions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
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
    )
    op.create_index(
        "ix_workflow_calls_wait", "workflow_calls", ["source", "type", "match_paths", "match_key"],
        postgresql_where=sa.text(_OPEN_WAIT), sqlite_where=sa.text(_OPEN_WAIT),
    )
    op.create_index(
        "ix_workflow_calls_child", "workflow_calls", ["child_id"],
        postgresql_where=sa.text("child_id IS NOT NULL"),
        sqlite_where=sa.text("child_id IS NOT NULL"),
    )
    op.create_table(
        "workflow_match_sets",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("type", sa.String(255), primary_key=True),
        sa.Column("match_paths", sa.String(1000), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("workflow_match_sets")
    op.drop_index("ix_workflow_calls_child", table_name="workflow_calls")
    op.drop_index("ix_workflow_calls_wait", table_name="workflow_calls")
    op.drop_table("workflow_calls")
    op.drop_index("ix_executions_parent", table_name="executions")
    op.drop_index("ix_executions_waiting", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("parent_id")
        batch.drop_column("result")
