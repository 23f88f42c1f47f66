"""How this run of ``solo-os`` answers: tables and text, or JSON (``--json``), errors included.

Kept free of heavy imports: the top-level command reads it before any command module loads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

#: ``--json`` is on the command line: every error is one JSON object on stdout too.
json_output = False


def wants_json(argv: Sequence[str]) -> bool:
    for arg in argv:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def emit_error(kind: str, message: str, exit_code: int, problems: Sequence[str] = ()) -> None:
    """``{"error": kind, "message": ..., "problems": [...], "exit_code": n}`` on stdout."""
    document = {
        "error": kind,
        "message": message,
        "problems": list(problems) or [message],
        "exit_code": exit_code,
    }
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()
