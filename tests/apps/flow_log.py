"""The flow-control test apps' run log (``tests/apps/flow_app.py``, ``flow_race_app.py``).

Each call appends ``{"h": handler, "at": ..., "t": time, "pid": ..., ...}`` as one line to the
file named by ``FLOW_LOG``, in one ``O_APPEND`` write: lines of several worker processes never
interleave. The apps are loaded as files, with this folder on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any


def record(handler: str, at: str, **fields: Any) -> None:
    line = json.dumps({"h": handler, "at": at, "t": time.time(), "pid": os.getpid(), **fields})
    fd = os.open(os.environ["FLOW_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
