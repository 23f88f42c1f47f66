"""``cron.next_fire``: tables over DST transitions, leap days, seconds, and validation errors.

DST rules under test (see ``solo_os/core/cron.py``): a wall-clock schedule (fixed minute and hour)
fires each local time once — a time skipped by spring-forward right after the gap, a repeated
time at its first occurrence; an interval schedule (``*`` in minute or hour) follows elapsed
time — nonexistent times do not fire, a repeated hour fires again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solo_os import App, ConfigError
from solo_os.core import cron

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(expr: str, tz: str, after: str, n: int) -> list[str]:
    found = islice(cron.parse(expr, tz).fires(utc(after)), n)
    return [t.strftime("%Y-%m-%dT%H:%M:%S") for t in found]


# 2026: Berlin springs forward 03-29 01:00Z (02:00 CET -> 03:00 CEST) and falls back
# 10-25 01:00Z (03:00 CEST -> 02:00 CET). New York springs forward 03-08 07:00Z
# (02:00 EST -> 03:00 EDT) and falls back 11-01 06:00Z (02:00 EDT -> 01:00 EST).
DST_TABLE = [
    # --- Europe/Berlin, daily (wall clock) ---
    pytest.param("30 2 * * *", BERLIN, "2026-03-28T12:00", ["2026-03-29T01:00:00", "2026-03-30T00:30:00"],
                 id="berlin-spring-daily-skipped-time-fires-at-gap-end-03:00"),
    pytest.param("0 2 * * *", BERLIN, "2026-03-28T12:00", ["2026-03-29T01:00:00", "2026-03-30T00:00:00"],
                 id="berlin-spring-daily-02:00"),
    pytest.param("0,15,30,45 2 * * *", BERLIN, "2026-03-28T12:00",
                 ["2026-03-29T01:00:00", "2026-03-30T00:00:00"],
                 id="berlin-spring-four-skipped-times-fire-once-together"),
    pytest.param("30 2 * * *", BERLIN, "2026-10-24T12:00", ["2026-10-25T00:30:00", "2026-10-26T01:30:00"],
                 id="berlin-fall-daily-repeated-time-fires-once-first"),
    pytest.param("30 2 * * *", BERLIN, "2026-10-25T00:30", ["2026-10-26T01:30:00"],
                 id="berlin-fall-daily-not-again-in-second-pass"),
    pytest.param("30 2 * * *", BERLIN, "2026-10-25T01:10", ["2026-10-26T01:30:00"],
                 id="berlin-fall-daily-from-inside-second-pass"),
    pytest.param("0 30 2 * * *", BERLIN, "2026-03-28T12:00", ["2026-03-29T01:00:00", "2026-03-30T00:30:00"],
                 id="berlin-spring-daily-six-fields-same-rule"),
    # --- Europe/Berlin, hourly (interval) ---
    pytest.param("0 * * * *", BERLIN, "2026-03-28T23:30",
                 ["2026-03-29T00:00:00", "2026-03-29T01:00:00", "2026-03-29T02:00:00"],
                 id="berlin-spring-hourly-no-02:00"),
    pytest.param("30 * * * *", BERLIN, "2026-03-28T23:45",
                 ["2026-03-29T00:30:00", "2026-03-29T01:30:00"],
                 id="berlin-spring-hourly-half-past-nothing-made-up"),
    pytest.param("0 * * * *", BERLIN, "2026-10-24T23:30",
                 ["2026-10-25T00:00:00", "2026-10-25T01:00:00", "2026-10-25T02:00:00"],
                 id="berlin-fall-hourly-repeated-hour-fires-again"),
    pytest.param("*/30 * * * *", BERLIN, "2026-10-25T00:15",
                 ["2026-10-25T00:30:00", "2026-10-25T01:00:00", "2026-10-25T01:30:00", "2026-10-25T02:00:00"],
                 id="berlin-fall-every-30-min-from-inside-first-pass"),
    pytest.param("0 * * * *", BERLIN, "2026-10-25T00:30",
                 ["2026-10-25T01:00:00", "2026-10-25T02:00:00"],
                 id="berlin-fall-hourly-after-last-first-pass-fire"),
    # --- America/New_York, daily (wall clock) ---
    pytest.param("30 2 * * *", NEW_YORK, "2026-03-07T12:00", ["2026-03-08T07:00:00", "2026-03-09T06:30:00"],
                 id="new-york-spring-daily-skipped-time-fires-at-03:00-edt"),
    pytest.param("30 1 * * *", NEW_YORK, "2026-10-31T12:00", ["2026-11-01T05:30:00", "2026-11-02T06:30:00"],
                 id="new-york-fall-daily-repeated-time-fires-once"),
    pytest.param("0,30 1 * * *", NEW_YORK, "2026-11-01T04:00",
                 ["2026-11-01T05:00:00", "2026-11-01T05:30:00", "2026-11-02T06:00:00"],
                 id="new-york-fall-two-times-in-repeated-hour-once-each"),
    pytest.param("0 9 * * MON-FRI", NEW_YORK, "2026-03-06T15:00", ["2026-03-09T13:00:00"],
                 id="new-york-weekday-9am-across-spring-forward"),
    # --- America/New_York, hourly (interval) ---
    pytest.param("0 * * * *", NEW_YORK, "2026-03-08T06:30",
                 ["2026-03-08T07:00:00", "2026-03-08T08:00:00"],
                 id="new-york-spring-hourly"),
    pytest.param("0 * * * *", NEW_YORK, "2026-11-01T04:30",
                 ["2026-11-01T05:00:00", "2026-11-01T06:00:00", "2026-11-01T07:00:00"],
                 id="new-york-fall-hourly-01:00-twice"),
    # --- leap days, seconds, nicknames, UTC ---
    pytest.param("0 0 29 2 *", "UTC", "2025-01-01T00:00", ["2028-02-29T00:00:00", "2032-02-29T00:00:00"],
                 id="leap-day-utc"),
    pytest.param("0 0 29 2 *", BERLIN, "2027-06-01T00:00", ["2028-02-28T23:00:00", "2032-02-28T23:00:00"],
                 id="leap-day-berlin-midnight-is-previous-utc-day"),
    pytest.param("0 12 29 2 *", "UTC", "2028-02-29T12:00", ["2032-02-29T12:00:00"],
                 id="leap-day-strictly-after"),
    pytest.param("* * * * * *", "UTC", "2026-01-01T10:00:00.500000",
                 ["2026-01-01T10:00:01", "2026-01-01T10:00:02"], id="every-second"),
    pytest.param("*/15 * * * * *", "UTC", "2026-01-01T10:00:00",
                 ["2026-01-01T10:00:15", "2026-01-01T10:00:30"], id="every-15-seconds-strictly-after"),
    pytest.param("@daily", BERLIN, "2026-07-01T12:00", ["2026-07-01T22:00:00"], id="nickname-daily"),
    pytest.param("@hourly", "UTC", "2026-07-01T12:00", ["2026-07-01T13:00:00"], id="nickname-hourly"),
    pytest.param("0 0 L * *", "UTC", "2026-02-01T00:00", ["2026-02-28T00:00:00", "2026-03-31T00:00:00"],
                 id="last-day-of-month"),
]


@pytest.mark.parametrize(("expr", "tz", "after", "expected"), DST_TABLE)
def test_next_fires(expr: str, tz: str, after: str, expected: list[str]) -> None:
    assert fires(expr, tz, after, len(expected)) == expected


def test_next_fire_is_the_pure_contract() -> None:
    got = cron.next_fire("30 2 * * *", BERLIN, utc("2026-03-28T12:00"))
    assert got == utc("2026-03-29T01:00") and got.tzinfo is UTC
    local = got.astimezone(ZoneInfo(BERLIN))
    assert (local.hour, local.minute) == (3, 0)  # right after the gap


def test_next_fire_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        cron.next_fire("* * * * *", "UTC", datetime(2026, 1, 1))


def _brute_force_every_15(tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Every real instant whose local wall clock shows :00/:15/:30/:45 (interval semantics)."""
    zone = ZoneInfo(tz)
    out = []
    t = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= end:
        if t.astimezone(zone).minute % 15 == 0:
            out.append(t)
        t += timedelta(minutes=1)
    return out


@pytest.mark.parametrize(
    ("tz", "day"),
    [(BERLIN, "2026-03-28T20:00"), (BERLIN, "2026-10-24T20:00"),
     (NEW_YORK, "2026-03-08T00:00"), (NEW_YORK, "2026-10-31T23:00")],
)
def test_interval_schedule_matches_brute_force_across_transitions(tz: str, day: str) -> None:
    start = utc(day)
    end = start + timedelta(hours=12)
    got = list(cron.parse("*/15 * * * *", tz).between(start, end))
    assert got == _brute_force_every_15(tz, start, end)


@settings(max_examples=200, deadline=None)
@given(
    after=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31)),
    expr=st.sampled_from(["30 2 * * *", "0 * * * *", "*/7 * * * *", "15 1-3 * * *", "0 0 29 2 *"]),
    tz=st.sampled_from([BERLIN, NEW_YORK, "UTC", "Australia/Lord_Howe"]),
)
def test_fires_are_strictly_after_and_increasing(after: datetime, expr: str, tz: str) -> None:
    start = after.replace(tzinfo=UTC)
    got = list(islice(cron.parse(expr, tz).fires(start), 4))
    assert got[0] > start
    assert all(a < b for a, b in pairwise(got))
    # the iterator and the one-shot function agree
    assert cron.next_fire(expr, tz, start) == got[0]
    assert cron.next_fire(expr, tz, got[0]) == got[1]


def test_wall_clock_schedule_fires_every_local_day_exactly_once_for_a_year() -> None:
    zone = ZoneInfo(BERLIN)
    got = list(cron.parse("30 2 * * *", BERLIN).between(utc("2025-12-31T12:00"), utc("2026-12-31T12:00")))
    days = [t.astimezone(zone).date() for t in got]
    assert len(got) == 365 and len(set(days)) == 365


@pytest.mark.parametrize(
    ("expr", "tz", "message"),
    [
        ("61 * * * *", "UTC", "bad minute field"),
        ("* 24 * * *", "UTC", "bad hour field"),
        ("0 0 30 2 *", "UTC", "bad day-of-month field"),
        ("0 0 * 13 *", "UTC", "bad month field"),
        ("* * * *", "UTC", "has 4 fields"),
        ("0 0 0 * * * *", "UTC", "has 7 fields"),
        ("0 0 ? * *", "UTC", "'?' is not supported"),
        ("", "UTC", "empty cron expression"),
        ("0 0 * * *", "Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("@fortnightly", "UTC", "has 1 fields"),
    ],
)
def test_bad_expressions_give_a_config_error_naming_the_schedule(expr: str, tz: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cron.parse(expr, tz, name="nightly-report")
    text = str(caught.value)
    assert "schedule 'nightly-report'" in text and message in text


def test_app_cron_rejects_bad_declarations_naming_the_schedule() -> None:
    app = App()

    def job(ctx: object) -> None: ...

    cases = [
        ({"expr": "61 * * * *"}, "schedule 'job': cron expression '61 * * * *': bad minute field"),
        ({"expr": "* * * * *", "timezone": "Nowhere/City"}, "unknown time zone"),
        ({"expr": "* * * * *", "overlap": "parallel"}, "overlap= must be"),
        ({"expr": "* * * * *", "catchup": "some"}, "catchup= must be"),
        ({"expr": "* * * * *", "catchup_window": timedelta(0)}, "catchup_window="),
        ({"expr": "* * * * *", "alert_after_failures": 0}, "alert_after_failures="),
        ({"expr": "* * * * *", "timeout": 0}, "timeout="),
        ({"expr": "* * * * *", "name": "has space"}, "schedule name 'has space'"),
    ]
    for kwargs, message in cases:
        expr = kwargs.pop("expr")
        with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("(", r"\(")):
            app.cron(expr, **kwargs)(job)  # type: ignore[arg-type]
    assert not app.schedules and not app.handlers


def test_app_cron_registers_a_cron_handler_and_a_schedule() -> None:
    app = App()

    @app.cron("0 2 * * *", name="daily-reconciliation", timezone=BERLIN, overlap="queue")
    async def reconcile(ctx: object) -> None: ...

    handler = app.handlers["daily-reconciliation"]
    assert (handler.kind, handler.source, handler.event_type, handler.schema) == ("cron", "", "", None)
    schedule = app.schedules["daily-reconciliation"]
    assert schedule.overlap == "queue" and schedule.catchup == "latest"
    assert schedule.catchup_window == timedelta(hours=24) and schedule.alert_after_failures == 3
    with pytest.raises(ConfigError, match="used twice"):
        app.cron("0 3 * * *", name="daily-reconciliation")(reconcile)
    app.prepare({})  # a cron handler listens to no source: no problem reported
