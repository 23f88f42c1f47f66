"""``worker --processes``: a child that a signal ends again and again is restarted ever more
slowly, not several times a second; one that ran long enough is restarted at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from solo_os.cli import _supervise


def test_restarts_of_a_child_killed_soon_after_each_start_back_off_up_to_the_cap() -> None:
    slot = _supervise._Slot.__new__(_supervise._Slot)
    slot.started, slot.delay, slot.restart_at = 100.0, 0.0, None
    waits = []
    for _ in range(9):
        waits.append(slot.backoff(slot.started + 1.0))  # killed 1 s after its start
        slot.started += 1.0 + waits[-1]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    # one that ran HEALTHY_AFTER seconds before the signal is started again at once
    assert slot.backoff(slot.started + _supervise.HEALTHY_AFTER) == 0.0
    assert slot.backoff(slot.started + 1.0) == 0.5  # and the doubling starts over


def test_a_child_that_kills_itself_at_start_is_restarted_a_few_times_then_sigterm_ends_all(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"
    child = (
        "import os, signal, sys; open(sys.argv[1], 'a').write('x\\n'); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    sup = (
        "import sys; from solo_os.cli import _supervise; "
        "sys.exit(_supervise.supervise(1, [sys.executable, '-c', sys.argv[1], sys.argv[2]], "
        "name='worker', restart_killed=True))"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", sup, child, str(starts)], stderr=subprocess.PIPE, text=True
    )
    time.sleep(3.0)  # real processes: restarts at ~0, 0.5, 1.5 s; the next is due at ~3.5 s
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=10)
    n = len(starts.read_text().splitlines())
    # without the backoff the supervisor, polling every 0.2 s, started it ~12 times by now
    assert 2 <= n <= 4, (n, err)
    assert "ended by signal 9; starting another in 0.5s" in err
    assert "starting another in 1.0s" in err
    assert p.returncode == 0, err  # stopped as asked while a restart was pending
