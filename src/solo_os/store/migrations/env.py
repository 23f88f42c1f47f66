"""Alembic environment: run on the connection the store hands over (see ``store._base.migrate``)."""

from __future__ import annotations

from alembic import context

from solo_os.store import _schema

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=_schema.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
