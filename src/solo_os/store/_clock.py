"""One clock for every host: this process's time, corrected to the database's.

Leases, ``run_after``, schedule fires and signature ages are compared across processes, and
those processes may run on hosts whose clocks disagree. A worker 30 s ahead once took back
live leases (it saw them expired), and one 30 s behind started retries and fires late. So on
PostgreSQL the store measures how far this process's clock is from the database's
(``SELECT clock_timestamp()``, halving the round trip) when it connects and again every few
seconds, and ``now()`` (the store's ``utcnow``, every component's default clock) adds that
offset. All hosts then agree on the database's time, within the measurement's error.

An offset under ``TOLERANCE`` (plus half the round trip) is taken as none (hosts on NTP agree
that well, and below it nothing that runs on the poll interval can tell). An injected test clock
is not touched.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

log = structlog.get_logger("solo_os.store")
TOLERANCE = timedelta(milliseconds=100)
MAX_ROUND_TRIP = timedelta(seconds=1)  # a slower measurement says little: ignored

_offset = timedelta(0)


def now() -> datetime:
    """This host's time corrected to the database's."""
    return datetime.now(UTC) + _offset


def offset() -> timedelta:
    return _offset


def observe(sent: datetime, database: datetime, received: datetime) -> None:
    """Record one measurement: the database said ``database`` between ``sent`` and
    ``received`` (this host's uncorrected clock)."""
    global _offset
    trip = received - sent
    if trip > MAX_ROUND_TRIP or trip < timedelta(0):
        return
    measured = database - (sent + trip / 2)
    # The answer left the database somewhere in the round trip: an offset within half of it
    # (plus the tolerance) cannot be told from none.
    new = measured if abs(measured) >= TOLERANCE + trip / 2 else timedelta(0)
    if abs(new - _offset) >= TOLERANCE:
        log.warning(
            "store.clock_offset", offset_seconds=round(new.total_seconds(), 3),
            message="this host's clock differs from the database's: using the database's",
        )
    _offset = new


def reset() -> None:
    global _offset
    _offset = timedelta(0)


def local() -> datetime:
    """This host's own, uncorrected time (for measuring)."""
    return datetime.now(UTC)
