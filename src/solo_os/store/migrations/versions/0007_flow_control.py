"""Flow control (SPEC section 7): keys on executions, per-key state, batch membership.

- ``executions`` gains ``flow_key`` (non-null: claimed by the flow claim; the concurrency key
  or ""), ``throttle_key``, ``priority`` and ``group_key`` (singleton, debounce, batch).
- The plain claim's partial indexes (``ix_executions_due``, ``ix_executions_lost``) leave
  flow-controlled executions out; ``ix_executions_flow_due`` and ``ix_executions_flow_running``
  serve the flow claim (running per key is counted from the executions themselves, so no
  counter can drift).
- ``flow_state``: one row per throttle / rate-limit / debounce key.
- ``batch_items``: the events of each batch execution.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from solo_os.store._schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _partial(name: str, cols: list[str], where: str) -> None:
    op.create_index(
        name, "executions", cols, postgresql_where=sa.text(where), sqlite_where=sa.text(where)
    )


def upgrade() -> None:
    with op.batch_alter_table("executions") as b:
        b.add_column(sa.Column("flow_key", sa.String(512), nullable=True))
        b.add_column(sa.Column("throttle_key", sa.String(512), nullable=True))
        b.add_column(sa.Column("priority", sa.Integer, nullable=True))
        b.add_column(sa.Column("group_key", sa.String(512), nullable=True))
    op.drop_index("ix_executions_due", table_name="executions")
    op.drop_index("ix_executions_lost", table_name="executions")
    _partial("ix_executions_due", ["run_after"], "status = 'pending' AND flow_key IS NULL")
    _partial(
        "ix_executions_lost", ["run_after"],
        "status = 'pending' AND losses > 0 AND flow_key IS NULL",
    )
    _partial(
        "ix_executions_flow_due", ["created_at", "id"], "status = 'pending' AND flow_key IS NOT NULL"
    )
    _partial(
        "ix_executions_flow_retry", ["run_after"],
        "status = 'pending' AND flow_key IS NOT NULL AND attempts > 0",
    )
    _partial(
        "ix_executions_flow_running", ["flow_key"], "status = 'running' AND flow_key IS NOT NULL"
    )
    _partial("ix_executions_group", ["group_key", "status"], "group_key IS NOT NULL")
    op.create_table(
        "flow_state",
        sa.Column("key", sa.String(600), primary_key=True),
        sa.Column("times", JSON, nullable=False),
        sa.Column("until", UTCDateTime, nullable=True),
    )
    op.create_index("ix_flow_state_until", "flow_state", ["until"])
    op.create_table(
        "batch_items",
        sa.Column(
            "execution_id", sa.Uuid, sa.ForeignKey("executions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "event_id", sa.Uuid, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("handler", sa.String(255), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("event_id", "handler", name="pk_batch_items"),
    )
    op.create_index("ix_batch_items_execution", "batch_items", ["execution_id", "position"])


def downgrade() -> None:
    op.drop_table("batch_items")
    op.drop_table("flow_state")
    for name in ("ix_executions_group", "ix_executions_flow_running", "ix_executions_flow_retry",
                 "ix_executions_flow_due",
                 "ix_executions_due", "ix_executions_lost"):
        op.drop_index(name, table_name="executions")
    op.create_index(
        "ix_executions_due", "executions", ["run_after"],
        postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_executions_lost", "executions", ["run_after"],
        postgresql_where=sa.text("status = 'pending' AND losses > 0"),
        sqlite_where=sa.text("status = 'pending' AND losses > 0"),
    )
    with op.batch_alter_table("executions") as b:
        for col in ("group_key", "priority", "throttle_key", "flow_key"):
            b.drop_column(col)
