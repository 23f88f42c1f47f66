"""The chaos tests' process helper (``_support.Procs``) leaves nothing running after a test,
even what a started process left behind without passing on the SIGTERM it got."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.chaos import _support


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose here: it waits for init to reap it.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_process_a_wrapper_left_behind_is_stopped_with_the_test(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # A wrapper like faketime(1): SIGTERM ends it, and its child runs on (reparented to init).
    wrapper = ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"]
    with _support.processes(tmp_path) as procs:
        procs.start(wrapper, dict(os.environ), "wrapper")
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "the wrapper did not start its child"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert _alive(child)
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the wrapper's child outlived the test"
