"""Migration 0009 on SQLite and PostgreSQL: ``ix_executions_lost`` covers flow-controlled
rows after the upgrade, leaves them out again after a downgrade to 0008, and the upgrade
back to head restores it (so ``lost_due`` finds a lost flow-controlled execution)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from solo_os import store as store_mod


async def _definition(store: Any) -> str:
    if store._db.dialect.name == "sqlite":  # the test reads the schema itself
        q = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'ix_executions_lost'"
    else:
        q = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_executions_lost'"
    async with store._db.read() as conn:
        return str(await conn.scalar(sa.text(q)))


async def _to(store: Any, revision: str, down: bool) -> None:
    from alembic import command

    cfg = store._alembic_config()

    def run(sync_conn: sa.Connection) -> None:
        cfg.attributes["connection"] = sync_conn
        (command.downgrade if down else command.upgrade)(cfg, revision)

    async with store._db.write() as conn:
        await conn.run_sync(run)


async def test_0009_widens_the_lost_index_and_downgrades(store: store_mod.Store) -> None:
    assert "flow_key" not in await _definition(store)
    await _to(store, "0008", down=True)
    assert "flow_key IS NULL" in await _definition(store)
    await _to(store, "head", down=False)
    after = await _definition(store)
    assert "losses > 0" in after and "flow_key" not in after
