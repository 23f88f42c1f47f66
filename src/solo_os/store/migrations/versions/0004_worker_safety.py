"""Worker safety: lost attempts counted apart from attempts, and a shared sign-in throttle.

``executions.losses`` counts attempts lost because the process running them died (the lease
ran out). Losses do not spend ``max_attempts``; an execution lost ``MAX_LOSSES`` times is
dead as a poison. ``signin_throttle`` holds failed admin sign-ins per client, so every
process of ``serve --workers N`` applies the same limit.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from solo_os.store._schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
LOST = "status = 'pending' AND losses > 0"


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("losses", sa.Integer, nullable=False, server_default="0"))
    # Finding a due execution that was lost before must not scan a backlog of others.
    op.create_index(
        "ix_executions_lost",
        "executions",
        ["run_after"],
        postgresql_where=sa.text(LOST),
        sqlite_where=sa.text(LOST),
    )
    op.create_table(
        "signin_throttle",
        sa.Column("client", sa.String(255), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Index("ix_signin_throttle_updated", "updated_at"),
    )


def downgrade() -> None:
    op.drop_table("signin_throttle")
    op.drop_index("ix_executions_lost", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("losses")
