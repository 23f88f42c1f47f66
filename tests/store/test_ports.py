"""Both dialect stores offer every port (mypy proves the signatures; this, the live objects)."""

from __future__ import annotations

import pytest

from solo_os.store import Store
from solo_os.store.ports import ALL_PORTS


@pytest.mark.parametrize("port", ALL_PORTS, ids=lambda p: p.__name__)
async def test_the_store_implements_the_port(store: Store, port: type) -> None:
    assert isinstance(store, port)
