"""Search and handler logs: lookup indexes, a payload text index, and ``execution_logs``.

- ``events.idempotency_key``, ``events.correlation_id`` and ``executions.correlation_id`` get
  indexes, so the admin API's search finds them by equality at any table size.
- On PostgreSQL, a trigram GIN index over the payload's text (``pg_trgm``) serves the search's
  substring match (``ILIKE '%text%'``). The extension is created if the role may; if it may not
  (or ``pg_trgm`` is not installed), the index is skipped and the search falls back to the
  bounded scan SQLite uses (see ``store/_admin.py``). ``CREATE EXTENSION pg_trgm`` by a
  superuser, then ``solo-os db upgrade`` on a fresh database, or the ``CREATE INDEX`` below by
  hand, adds it later.
- ``execution_logs`` holds what ``ctx.log`` emitted during each attempt (bounded, redacted),
  deleted with its execution (foreign-key cascade, so retention prunes it too).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from solo_os.store._schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TRGM_INDEX = "ix_events_payload_trgm"

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    op.create_index("ix_events_idempotency_key", "events", ["idempotency_key"])
    op.create_index("ix_events_correlation", "events", ["correlation_id"])
    op.create_index("ix_executions_correlation", "executions", ["correlation_id"])
    op.create_table(
        "execution_logs",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column(
            "execution_id",
            sa.Uuid,
            sa.ForeignKey("executions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("fields", JSON, nullable=True),
        sa.UniqueConstraint("execution_id", "attempt", "seq", name="uq_execution_logs_line"),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _payload_trigram_index(bind)


def _payload_trigram_index(bind: sa.Connection) -> None:
    try:
        with bind.begin_nested():  # a failure must not abort the migration's transaction
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        log.warning(
            "pg_trgm is not available (%s): payload text search uses a bounded scan; "
            "a superuser can run CREATE EXTENSION pg_trgm and create %s later",
            type(exc.orig).__name__,
            TRGM_INDEX,
        )
        return
    bind.execute(
        sa.text(f"CREATE INDEX IF NOT EXISTS {TRGM_INDEX} ON events USING gin ((payload::text) gin_trgm_ops)")
    )


def downgrade() -> None:
    op.execute(sa.text(f"DROP INDEX IF EXISTS {TRGM_INDEX}"))
    op.drop_table("execution_logs")
    op.drop_index("ix_executions_correlation", "executions")
    op.drop_index("ix_events_correlation", "events")
    op.drop_index("ix_events_idempotency_key", "events")
