"""The text of an alert: one ``Message`` per closed alert, as every channel renders it (pure).

The channels and their delivery are in ``solo_os.alerts`` and ``runtime/alerter.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from solo_os.core.records import Alert


@dataclass(frozen=True)
class Message:
    """One alert as every channel renders it."""

    service: str
    kind: str
    key: str
    subject: str
    count: int
    first_at: datetime
    last_at: datetime
    title: str
    text: str
    samples: list[dict[str, Any]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "kind": self.kind,
            "key": self.key,
            "subject": self.subject,
            "count": self.count,
            "first_at": self.first_at.isoformat(),
            "last_at": self.last_at.isoformat(),
            "title": self.title,
            "text": self.text,
            "samples": self.samples,
            "commands": self.commands,
        }


def _span(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"


def _same(value: Any) -> Any:
    return value


def render(alert: Alert, service: str, *, scrub: Callable[[Any], Any] = _same) -> Message:
    """The message for a closed alert (pure). ``scrub`` takes known secrets out of a sample."""
    samples = [scrub(dict(s)) for s in (alert.samples or [])]
    latest = samples[0] if samples else {}
    lines: list[str] = []
    commands: list[str] = []
    describe = _DESCRIBE.get(alert.kind, _other)
    title = describe(alert, samples, latest, lines, commands)
    if commands:
        lines.append("Inspect:")
        lines.extend(f"  {c}" for c in commands)
    return Message(
        service=service, kind=alert.kind, key=alert.key, subject=alert.subject, count=alert.total,
        first_at=alert.first_at, last_at=alert.last_at, title=f"[{service}] {title}",
        text="\n".join(lines), samples=samples, commands=commands,
    )


_Sample = dict[str, Any]


def _dead(
    alert: Alert, samples: list[_Sample], latest: _Sample, lines: list[str], commands: list[str]
) -> str:
    n, subject, xid = alert.total, alert.subject, latest.get("execution_id")
    span = _span(max(1.0, ((alert.closed_at or alert.last_at) - alert.first_at).total_seconds()))
    title = f"{n} executions of {subject} went dead" if n > 1 else f"An execution of {subject} went dead"
    lines.append(f"{title} in the last {span}." if n > 1 else f"{title}.")
    for s in samples:
        lines.append(
            f"- execution {s.get('execution_id')} (correlation id {s.get('correlation_id')}, "
            f"{s.get('attempts')} attempt(s)): {s.get('error') or 'no error recorded'}"
        )
    if n > len(samples):
        lines.append(f"- ... and {n - len(samples)} more")
    if xid:
        commands.append(f"solo-os executions show {xid}")
    commands.append(f"solo-os dlq list --handler {subject}")
    commands.append(f"solo-os dlq replay --all --handler {subject}")
    return title


def _failing(
    alert: Alert, samples: list[_Sample], latest: _Sample, lines: list[str], commands: list[str]
) -> str:
    xid = latest.get("execution_id")
    title = f"Schedule {alert.subject} failed {latest.get('failures', alert.total)} times in a row"
    lines.append(f"{title}; the last run (fire time {latest.get('fire_at')}) went dead.")
    lines.append(
        f"- execution {xid} (correlation id {latest.get('correlation_id')}): "
        f"{latest.get('error') or 'no error recorded'}"
    )
    if xid:
        commands.append(f"solo-os executions show {xid}")
    commands.append("solo-os schedules list")
    return title


def _recovered(
    alert: Alert, samples: list[_Sample], latest: _Sample, lines: list[str], commands: list[str]
) -> str:
    xid = latest.get("execution_id")
    title = f"Schedule {alert.subject} recovered"
    lines.append(
        f"{title}: the run for {latest.get('fire_at')} succeeded after "
        f"{latest.get('after_failures')} failure(s) in a row "
        f"(execution {xid}, correlation id {latest.get('correlation_id')})."
    )
    if xid:
        commands.append(f"solo-os executions show {xid}")
    return title


def _missed(
    alert: Alert, samples: list[_Sample], latest: _Sample, lines: list[str], commands: list[str]
) -> str:
    n, subject = alert.total, alert.subject
    missed = sum(int(s.get("missed", 0)) for s in samples) if n <= len(samples) else None
    count = f"{missed} fire(s)" if missed is not None else "fires"
    first = min((s.get("from", "") for s in samples), default="?")
    last = max((s.get("to", "") for s in samples), default="?")
    title = f"Schedule {subject} missed {count}"
    lines.append(
        f"{title} between {first} and {last}: no scheduler was running "
        f"(catchup={latest.get('catchup')})."
    )
    commands.append(f"solo-os schedules backfill {subject} --from {first} --to {last}")
    return title


def _other(
    alert: Alert, samples: list[_Sample], latest: _Sample, lines: list[str], commands: list[str]
) -> str:
    lines.append(f"{alert.total} occurrence(s).")
    return f"{alert.kind}: {alert.subject}"


_DESCRIBE: dict[str, Callable[[Alert, list[_Sample], _Sample, list[str], list[str]], str]] = {
    "dead": _dead,
    "schedule_failing": _failing,
    "schedule_recovered": _recovered,
    "schedule_missed": _missed,
}
