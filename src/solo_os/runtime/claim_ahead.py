"""Claiming ahead: a worker leases, beyond its free slots, the executions its running handlers
are expected to free while a claim is on its way (issue 21).

With handlers as short as a claim's round trip, a worker that claims only into free slots waits
for every claim: its slots empty, the claim goes out, the handlers wait for it. Claimed ahead,
the next executions are at hand when slots free, and the claim's round trip overlaps the
handlers that run. Handlers that run longer than a claim takes are not claimed ahead: they
would wait here while another worker could run them.
"""

from __future__ import annotations

import collections

from solo_os.core import records


class ClaimAhead:
    """What a worker has claimed ahead (leased, not started: ``ready``, oldest first), and how
    many to claim now (``wanted``), from running averages of a claim's and a handler's time."""

    __slots__ = ("_claim_seconds", "_run_seconds", "concurrency", "ready")

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.ready: collections.deque[records.Claimed] = collections.deque()
        self._claim_seconds = 0.0
        self._run_seconds = 0.0  # 0: no handler has returned yet, nothing is claimed ahead

    def claim_took(self, seconds: float) -> None:
        self._claim_seconds = _average(self._claim_seconds, seconds, 8)

    def run_took(self, seconds: float) -> None:
        self._run_seconds = _average(self._run_seconds, seconds, 16)

    def wanted(self, running: int, leased: int) -> int:
        """How many to claim with ``running`` handlers running and ``leased`` executions held
        in all (running, outcomes being written, claimed ahead): the free slots, and those the
        running handlers are expected to free during the claim; at most ``concurrency`` more
        leased than run at once."""
        free = self.concurrency - running - len(self.ready)
        if self._run_seconds > 0.0:
            expected = int(running * self._claim_seconds / self._run_seconds)
            free += min(self.concurrency, expected)
        return min(free, 2 * self.concurrency - leased)


def _average(mean: float, sample: float, weight: int) -> float:
    """A running average of ``weight`` samples or so; the first sample as it is."""
    return mean + (sample - mean) / weight if mean else sample
