"""The scheduler's pure plan: what to fire for one schedule at one moment (no I/O).

``runtime/scheduler.py`` runs the loop; the store's ``advance_schedule`` reads a
``ScheduleState`` under the schedule's lock, hands it to ``plan`` and writes the ``FirePlan``
that comes back. The policies (catch-up, overlap, failure streaks) are described in
``runtime/scheduler.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from solo_os import errors
from solo_os.core import cron as cron_mod
from solo_os.core.records import FireKind, FirePlan, FlowMark, Occurrence, PlannedFire, ScheduleState

LATE_GRACE = timedelta(seconds=60)  # a fire this late still runs as if on time
MAX_FIRES_PER_PASS = 10_000  # a bigger backlog is worked off over several passes


Overlap = Literal["skip", "allow", "queue"]
Catchup = Literal["none", "latest", "all"]


@dataclass(frozen=True)
class Schedule:
    """One ``@app.cron`` schedule: when it fires, and what happens around a fire (see
    ``docs/scheduling.md``). Its handler is ``app.handlers[name]`` (``kind="cron"``)."""

    name: str
    expression: str
    timezone: str
    overlap: Overlap  # the previous run still goes: skip this fire, allow it, or queue it
    catchup: Catchup  # after downtime: run no missed fire, the latest one, or all of them
    catchup_window: timedelta  # fires missed longer ago than this are never run
    alert_after_failures: int | None  # alert when this many fires in a row went dead
    cron: cron_mod.Cron
    flow: FlowMark | None = None  # concurrency=/priority= (SPEC 7), stored with each fire's execution


def plan(
    schedule: Schedule,
    state: ScheduleState,
    *,
    now: datetime,
    max_attempts: int,
    grace: timedelta = LATE_GRACE,
    limit: int = MAX_FIRES_PER_PASS,
) -> FirePlan:
    """What to do for ``schedule`` at ``now`` given its stored ``state`` (no I/O)."""
    failures, alerted, occurrences = _settle(schedule, state, now)
    if state.paused:
        return FirePlan(
            failures=failures, alerted=alerted, occurrences=tuple(occurrences),
            max_attempts=max_attempts,
        )
    due = _due(schedule, state, now=now, grace=grace, limit=limit)
    fires: list[PlannedFire] = []
    if due.n_missed:
        fires.append(_missed_fire(schedule, due.missed[0], due.missed[-1], due.n_missed, now))
    active, queued = state.active, state.queued
    release = queued > 0 and active == 0
    if release:
        active, queued = active + 1, queued - 1
    runs: list[tuple[datetime, FireKind]] = [(t, "catchup") for t in due.caught_up]
    runs.extend((t, "scheduled") for t in due.on_time)
    for t, kind in sorted(runs):
        if schedule.overlap == "allow" or (active == 0 and queued == 0):
            fires.append(PlannedFire(t, kind, "fired"))
            active += 1
        elif schedule.overlap == "queue" or kind == "catchup":
            fires.append(PlannedFire(t, kind, "queued"))
            queued += 1
        else:
            fires.append(PlannedFire(t, kind, "skipped"))
    return FirePlan(
        fires=tuple(sorted(fires, key=lambda f: f.fire_at)),
        release=release,
        failures=failures,
        alerted=alerted,
        occurrences=tuple(occurrences),
        max_attempts=max_attempts,
        flow=schedule.flow,
    )


@dataclass
class _Due:
    """The fire times since the last fire, sorted by the catch-up policy."""

    on_time: list[datetime] = field(default_factory=list)
    caught_up: list[datetime] = field(default_factory=list)
    missed: list[datetime] = field(default_factory=list)  # only the first and the last, see _missed
    n_missed: int = 0

    def miss(self, t: datetime) -> None:
        self.n_missed, self.missed = _missed(self.missed, self.n_missed, t)


def _due(
    schedule: Schedule, state: ScheduleState, *, now: datetime, grace: timedelta, limit: int
) -> _Due:
    """Which fire times are on time, caught up or missed (at most ``limit`` of them)."""
    start = max(state.last_fire or state.active_since, state.active_since)
    due = _Due()
    latest: datetime | None = None
    seen = 0
    for t in schedule.cron.between(start, now):
        seen += 1
        age = now - t
        if age <= grace:
            due.on_time.append(t)
        elif age > schedule.catchup_window or schedule.catchup == "none":
            due.miss(t)
        elif schedule.catchup == "all":
            due.caught_up.append(t)
        else:  # latest: the previous candidate is missed after all
            if latest is not None:
                due.miss(latest)
            latest = t
        if seen >= limit:
            break
    truncated = seen >= limit
    if latest is not None:
        if due.on_time or truncated:  # an on-time fire is the catch-up; or a later one exists
            due.miss(latest)
        else:
            due.caught_up.append(latest)
    return due


def _missed(missed: list[datetime], n: int, t: datetime) -> tuple[int, list[datetime]]:
    """Count ``t`` as missed, keeping only the first and the last missed time."""
    return n + 1, [missed[0], t] if missed else [t]


def _missed_fire(
    schedule: Schedule, first: datetime, last: datetime, count: int, now: datetime
) -> PlannedFire:
    alert = Occurrence(
        key=f"schedule-missed:{schedule.name}",
        kind="schedule_missed",
        subject=schedule.name,
        source=f"missed:{schedule.name}:{last.isoformat()}",
        at=now,
        details={
            "schedule": schedule.name,
            "missed": count,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "catchup": schedule.catchup,
            "catchup_window_seconds": schedule.catchup_window.total_seconds(),
        },
    )
    return PlannedFire(
        last, "scheduled", "missed", missed_from=first, missed_count=count, alert=alert
    )


def _settle(
    schedule: Schedule, state: ScheduleState, now: datetime
) -> tuple[int, bool, list[Occurrence]]:
    """Fold finished fires into the failure streak; alerts for a streak and its recovery."""
    failures, alerted = state.failures, state.alerted
    found: list[Occurrence] = []
    threshold = schedule.alert_after_failures
    for s in sorted(state.settled, key=lambda s: s.fire_at):
        details = {
            "schedule": schedule.name,
            "fire_at": s.fire_at.isoformat(),
            "execution_id": str(s.execution_id) if s.execution_id else None,
            "correlation_id": s.correlation_id,
            "error": (s.error or "")[:1000],
        }
        if s.status == "dead":
            failures += 1
            if threshold is not None and failures >= threshold and not alerted:
                alerted = True
                found.append(
                    Occurrence(
                        key=f"schedule-failing:{schedule.name}",
                        kind="schedule_failing",
                        subject=schedule.name,
                        source=f"failing:{schedule.name}:{s.fire_id}",
                        at=now,
                        details={**details, "failures": failures},
                    )
                )
        elif s.status == "succeeded":
            if alerted:
                found.append(
                    Occurrence(
                        key=f"schedule-recovered:{schedule.name}",
                        kind="schedule_recovered",
                        subject=schedule.name,
                        source=f"recovered:{schedule.name}:{s.fire_id}",
                        at=now,
                        details={**details, "error": None, "after_failures": failures},
                    )
                )
            failures, alerted = 0, False
    return failures, alerted, found


def check_cron_options(
    where: str,
    overlap: Overlap,
    catchup: Catchup,
    catchup_window: timedelta,
    alert_after_failures: int | None,
    timeout: float,
) -> None:
    """``@app.cron``'s policy options (``App.cron``), refused with a ``ConfigError`` naming the schedule."""
    if overlap not in ("skip", "allow", "queue"):
        raise errors.ConfigError(f"{where}: overlap= must be 'skip', 'allow' or 'queue'")
    if catchup not in ("none", "latest", "all"):
        raise errors.ConfigError(f"{where}: catchup= must be 'none', 'latest' or 'all'")
    if not isinstance(catchup_window, timedelta) or catchup_window <= timedelta(0):
        raise errors.ConfigError(f"{where}: catchup_window= must be a positive timedelta")
    if alert_after_failures is not None and (
        isinstance(alert_after_failures, bool)
        or not isinstance(alert_after_failures, int)
        or alert_after_failures < 1
    ):
        raise errors.ConfigError(
            f"{where}: alert_after_failures= must be a whole number >= 1, or None"
        )
    if not timeout > 0:
        raise errors.ConfigError(f"{where}: timeout= must be a positive number of seconds")
