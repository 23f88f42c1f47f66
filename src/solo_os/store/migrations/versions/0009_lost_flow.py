"""Lost flow-controlled executions run alone (issue 16): ``ix_executions_lost`` no longer
leaves flow-controlled executions out, so ``lost_due`` finds a kill -9'd execution of a
Concurrency or Throttle handler too (the flow claim then leases it with ``lost=True``, alone).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

LOST = "status = 'pending' AND losses > 0"


def _lost(where: str) -> None:
    op.drop_index("ix_executions_lost", table_name="executions")
    op.create_index(
        "ix_executions_lost", "executions", ["run_after"],
        postgresql_where=sa.text(where), sqlite_where=sa.text(where),
    )


def upgrade() -> None:
    _lost(LOST)


def downgrade() -> None:
    _lost(f"{LOST} AND flow_key IS NULL")
