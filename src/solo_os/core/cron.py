"""Cron math: when a schedule fires, in its IANA time zone, across daylight saving changes.

Pure: no I/O, no clock. ``next_fire(expr, tz, after)`` is the whole contract; ``Cron`` is the
parsed, reusable form. Expressions are parsed by ``cronsim`` (5 fields, or 6 with seconds
first; ``L``, ``LW``, ``#``, names; the ``@daily``-style nicknames are added here), evaluated
on naive wall-clock times, and mapped to instants here, so the daylight saving rules are ours
and the same for 5 and 6 fields:

- **Wall-clock schedules** (minute and hour fields both fixed, like ``30 2 * * *``) name local
  times. Each matching local time fires exactly once: a time skipped by spring-forward fires
  once right after the gap (at the first instant of the new offset); a time that happens twice
  at fall-back fires once, at its first occurrence.
- **Interval schedules** (minute or hour field starting with ``*``, like ``*/15 * * * *`` or
  ``0 * * * *``) follow the clock as it elapses: local times that do not exist do not fire
  (nothing is made up), and a repeated hour fires again, so an every-minute job never stops
  for an hour in autumn.

This is what Vixie/Debian cron, cronsim and croner (OCPS 1.4) do.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cronsim

from solo_os import errors

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_FORMAT = (
    "use 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, "
    "or @hourly/@daily/@weekly/@monthly/@yearly"
)
_ONE_SECOND = timedelta(seconds=1)
WallKind = Literal["real", "ambiguous", "imaginary"]


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression in a time zone. Build it with ``parse``."""

    expression: str  # as written
    fields: str  # normalised to 6 fields, seconds first
    zone: ZoneInfo
    wall_clock: bool  # minute and hour fixed: fires at named local times

    @property
    def timezone(self) -> str:
        return self.zone.key

    def next_after(self, after: datetime) -> datetime:
        """The first fire strictly after ``after`` (aware), as an aware UTC datetime."""
        return next(self.fires(after))

    def fires(self, after: datetime) -> Iterator[datetime]:
        """Every fire strictly after ``after``, ascending, as aware UTC datetimes (endless)."""
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("cron: 'after' must be an aware datetime")
        after = after.astimezone(UTC)
        while True:
            local = after.astimezone(self.zone)
            start = local.replace(tzinfo=None)
            if not self.wall_clock and local.fold == 0 and self._kind(start) == "ambiguous":
                # In the first pass of a repeated hour: the rest of the first pass comes before
                # the second pass, which naive wall-clock order would put first.
                found = self._first_pass_rest(start, after)
                yield found
                after = found
                continue
            restart = False
            for wall in self._walls(start):
                kind, instants = self._instants(wall)
                later = [i for i in instants if i > after]
                if not later:
                    continue
                if kind == "ambiguous" and not self.wall_clock:
                    # One fire, then re-enter through the overlap logic above: later walls'
                    # first-pass instants come before this wall's second-pass one.
                    yield later[0]
                    after = later[0]
                    restart = True
                    break
                yield later[0]
                after = later[0]
            if not restart:
                return  # cronsim found nothing in 50 years (parse() rules that out)

    def between(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Fires ``t`` with ``after < t <= until``, ascending."""
        for t in self.fires(after):
            if t > until:
                return
            yield t

    def last_at_or_before(self, when: datetime, floor: datetime) -> datetime | None:
        """The latest fire in ``(floor, when]``, or None."""
        found: datetime | None = None
        for t in self.between(floor, when):
            found = t
        return found

    # --- mapping wall-clock times to instants ---------------------------------------------

    def _walls(self, start: datetime) -> Iterator[datetime]:
        """Naive wall-clock times matching the expression, strictly after naive ``start``."""
        try:
            yield from cronsim.CronSim(self.fields, start)
        except StopIteration:  # pragma: no cover - parse() checks the expression fires
            return

    def _kind(self, wall: datetime) -> WallKind:
        first = wall.replace(tzinfo=self.zone, fold=0)
        second = wall.replace(tzinfo=self.zone, fold=1)
        if first.utcoffset() == second.utcoffset():
            return "real"
        back = first.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None)
        return "ambiguous" if back == wall else "imaginary"

    def _instants(self, wall: datetime) -> tuple[WallKind, tuple[datetime, ...]]:
        """The instants a matching wall-clock time fires at, ascending (see the module doc)."""
        kind = self._kind(wall)
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if kind == "real":
            return kind, (first,)
        if kind == "ambiguous":
            if self.wall_clock:
                return kind, (first,)
            return kind, (first, wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC))
        if not self.wall_clock:
            return kind, ()
        later = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        return kind, (_transition(self.zone, min(first, later), max(first, later)),)

    def _first_pass_rest(self, start: datetime, after: datetime) -> datetime:
        """Interval mode, ``after`` in the first pass of an overlap: the next fire."""
        first = start.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        second = start.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        change = _transition(self.zone, first, second)
        overlap_start = (change + _offset(self.zone, change)).replace(tzinfo=None)
        overlap_end = (change + _offset(self.zone, change - _ONE_SECOND)).replace(tzinfo=None)
        for wall in self._walls(start):
            if wall >= overlap_end:
                break
            return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        # Nothing left in the first pass: the second pass starts at the transition.
        for wall in self._walls(overlap_start - _ONE_SECOND):
            for instant in self._instants(wall)[1]:
                if instant > after:
                    return instant
        raise AssertionError("unreachable: parse() checks the expression fires")  # pragma: no cover


def _offset(zone: tzinfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _transition(zone: tzinfo, lo: datetime, hi: datetime) -> datetime:
    """The first whole second in ``(lo, hi]`` at which ``zone``'s offset is the one at ``hi``."""
    target = _offset(zone, hi)
    low = int(lo.timestamp())
    high = int(hi.timestamp())
    while high - low > 1:
        mid = (low + high) // 2
        if _offset(zone, datetime.fromtimestamp(mid, UTC)) == target:
            high = mid
        else:
            low = mid
    return datetime.fromtimestamp(high, UTC)


def zone(timezone: str, *, name: str | None = None) -> ZoneInfo:
    """The IANA zone ``timezone``, or a ``ConfigError`` naming the schedule."""
    where = f"schedule {name!r}: " if name else ""
    if not isinstance(timezone, str) or not timezone:
        raise errors.ConfigError(f"{where}timezone must be an IANA name like 'Europe/Berlin'")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.ConfigError(
            f"{where}unknown time zone {timezone!r}; use an IANA name like 'Europe/Berlin' or 'UTC'"
        ) from None


@functools.lru_cache(maxsize=256)
def _parse(expression: str, timezone: str) -> Cron:
    text = " ".join(expression.split())
    text = NICKNAMES.get(text.lower(), text)
    parts = text.split(" ")
    if len(parts) == 5:
        parts.insert(0, "0")
    if len(parts) != 6:
        raise ValueError(f"has {len(text.split())} fields; {_FORMAT}")
    if "?" in text:
        raise ValueError("'?' is not supported; use '*'")
    fields = " ".join(parts)
    try:
        probe = cronsim.CronSim(fields, datetime(2000, 1, 1))
    except cronsim.CronSimError as exc:
        raise ValueError(_explain(str(exc))) from None
    try:
        next(probe)
    except StopIteration:
        raise ValueError("never fires") from None
    return Cron(
        expression=expression,
        fields=fields,
        zone=zone(timezone),
        wall_clock=not parts[1].startswith("*") and not parts[2].startswith("*"),
    )


def _explain(message: str) -> str:
    """cronsim's ``Bad minute`` as ``bad minute field``."""
    for field in _FIELD_NAMES:
        if message == f"Bad {field}":
            return f"bad {field} field"
    return message


def parse(expression: str, timezone: str = "UTC", *, name: str | None = None) -> Cron:
    """Parse ``expression`` in ``timezone``; a ``ConfigError`` naming the schedule otherwise."""
    where = f"schedule {name!r}: " if name else ""
    if not isinstance(expression, str) or not expression.strip():
        raise errors.ConfigError(f"{where}empty cron expression; {_FORMAT}")
    zone(timezone, name=name)
    try:
        return _parse(expression, timezone)
    except ValueError as exc:
        raise errors.ConfigError(f"{where}cron expression {expression!r}: {exc}") from None


def next_fire(expr: str, tz: str, after: datetime) -> datetime:
    """The first fire of ``expr`` in zone ``tz`` strictly after ``after``, as aware UTC."""
    return parse(expr, tz).next_after(after)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


def check_name(name: str) -> None:
    """A schedule name: it goes into correlation ids, CLI arguments and alert keys."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise errors.ConfigError(
            f"schedule name {name!r}: use 1-100 letters, digits, '-', '_', '.' or ':'"
        )
