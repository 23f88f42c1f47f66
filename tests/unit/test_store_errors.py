"""Driver errors become StoreUnavailable (try later, HTTP 503) or StoreError."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from solo_os import errors
from solo_os.store import _base


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"server said {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "unavailable"),
    [
        ("57P03", True),   # the database system is shutting down / starting up
        ("57P01", True),   # admin shutdown
        ("08006", True),   # connection failure
        ("53300", True),   # too many connections
        ("23505", False),  # unique violation: a real error
        ("22P02", False),  # invalid text representation
    ],
)
def test_sqlstates_are_sorted_into_try_later_or_error(sqlstate: str, unavailable: bool) -> None:
    exc = sa.exc.DBAPIError("SELECT 1", {}, _Orig(sqlstate))
    translated = _base._translate(exc)
    assert isinstance(translated, errors.StoreUnavailable) is unavailable
    assert isinstance(translated, errors.StoreError)
    assert str(translated).count("store") == 1  # said once, not "store error: store error"


def test_lost_connections_are_unavailable() -> None:
    assert isinstance(_base._translate(ConnectionResetError()), errors.StoreUnavailable)
    assert isinstance(_base._translate(TimeoutError()), errors.StoreUnavailable)
