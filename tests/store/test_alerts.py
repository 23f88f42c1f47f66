"""AlertPort: occurrences counted once, folded into an alert, delivered through a leased outbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from solo_os.store._alerts import AlertPolicy, Occurrence
from solo_os.store.ports import AlertPort
from solo_os.testing import Clock

POLICY = AlertPolicy(window=timedelta(hours=1), group_wait=timedelta(seconds=30))
LEASE = timedelta(seconds=60)


def dead(n: int, clock: Clock) -> Occurrence:
    return Occurrence("dead:fulfil", "dead", "fulfil", f"execution:{n}", clock(), {"n": n})


async def test_occurrences_dedup_and_fold(store: AlertPort, other: AlertPort, clock: Clock) -> None:
    counts = await asyncio.gather(
        store.record_occurrences([dead(1, clock), dead(2, clock)], clock(), POLICY),
        other.record_occurrences([dead(2, clock), dead(3, clock)], clock(), POLICY),
    )
    assert sum(counts) == 3  # execution:2 is counted once
    assert await store.record_occurrences([dead(1, clock)], clock(), POLICY) == 0
    assert await store.close_alerts(clock.advance(29), ["ops"]) == 0  # still gathering
    assert await store.close_alerts(clock.advance(1), ["ops", "pager"]) == 1
    [alert] = await store.list_alerts()
    assert (alert.key, alert.total, alert.closed_at) == ("dead:fulfil", 3, clock())
    assert alert.samples is not None and len(alert.samples) == 3
    assert await store.outbox_counts() == {"pending": 2, "sending": 0}


async def test_outbox_lease_retry_and_finish(store: AlertPort, other: AlertPort, clock: Clock) -> None:
    await store.record_occurrences([dead(1, clock)], clock(), POLICY)
    await store.close_alerts(clock.advance(30), ["a", "b"])
    first, second = await asyncio.gather(
        store.claim_deliveries(clock(), 10, LEASE), other.claim_deliveries(clock(), 10, LEASE)
    )
    claimed = first + second
    assert sorted(d.channel for d in claimed) == ["a", "b"]  # never both claimers
    assert all(d.attempt == 1 for d in claimed)
    assert await store.claim_deliveries(clock.advance(59), 10, LEASE) == []  # leased
    by = {d.channel: d for d in claimed}
    await store.finish_delivery(
        by["a"].alert.id, "a", 1, clock(), error="503", retry_at=clock() + timedelta(minutes=5)
    )
    # b's lease expires: taken again, as attempt 2
    [b2] = await other.claim_deliveries(clock.advance(2), 10, LEASE)
    assert (b2.channel, b2.attempt) == ("b", 2)
    # a stale finish of attempt 1 of b changes nothing
    await store.finish_delivery(b2.alert.id, "b", 1, clock())
    assert await store.outbox_counts() == {"pending": 1, "sending": 1}
    await store.finish_delivery(b2.alert.id, "b", 2, clock())
    [a2] = await store.claim_deliveries(clock.advance(minutes=5), 10, LEASE)
    assert (a2.channel, a2.attempt) == ("a", 2)
    await store.finish_delivery(a2.alert.id, "a", 2, clock(), error="400 bad request")
    [alert] = await store.list_alerts()
    assert alert.deliveries == {"a": "failed", "b": "sent"}
    assert await store.outbox_counts() == {"pending": 0, "sending": 0}
    assert await store.claim_deliveries(clock.advance(hours=1), 10, LEASE) == []


async def test_pruning_alerts_keeps_what_is_still_being_delivered(store: AlertPort, clock: Clock) -> None:
    """The alerter's hourly prune: occurrences older than the cut-off go; a closed alert goes
    only when none of its deliveries is pending or sending (a channel still being retried keeps
    its alert); an open alert stays."""
    await store.record_occurrences([dead(1, clock)], clock(), POLICY)
    await store.close_alerts(clock.advance(30), ["ops"])  # alert 1: closed, delivery pending
    await store.record_occurrences([dead(2, clock)], clock.advance(hours=2), POLICY)
    await store.close_alerts(clock.advance(30), ["ops"])  # alert 2: closed, will be sent
    [d1, d2] = sorted(await store.claim_deliveries(clock(), 10, LEASE), key=lambda d: d.alert.total)
    await store.finish_delivery(d2.alert.id, "ops", 1, clock())  # one of them sent
    sent_id = d2.alert.id
    sending_id = d1.alert.id if d1.alert.id != sent_id else d2.alert.id
    cut_off = clock.advance(hours=1)
    await store.record_occurrences([dead(3, clock)], clock.advance(1), POLICY)  # an open alert
    n = await store.prune_alerts(cut_off)
    left = {a.id for a in await store.list_alerts()}
    assert sent_id not in left and sending_id in left  # the sent one goes, the leased one stays
    assert len(left) == 2  # and the open one stays
    assert n == 2 + 1  # the two older occurrences and the sent alert
    # the newer occurrence stays, so recording it again still counts it once
    assert await store.record_occurrences([dead(3, clock)], clock(), POLICY) == 0
