"""Revalidate rejected events (the admin API's side): the use case is ``ops.revalidate``.

``BATCH`` is how many events the API loads with their bodies at a time.
"""

from __future__ import annotations

from solo_os.ops.revalidate import Revalidated, revalidate, revalidate_ids, revalidate_one

BATCH = 200

__all__ = ["BATCH", "Revalidated", "revalidate", "revalidate_ids", "revalidate_one"]
