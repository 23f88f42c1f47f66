"""QueuePort: claims, leases, outcomes, lease renewal, reaping and reading each input."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Protocol

from solo_os.core import records
from solo_os.store.ports import AdminPort, IngestPort, QueuePort
from solo_os.testing import Clock
from tests.store._support import event, finished

LEASE = 30.0


class Ports(IngestPort, QueuePort, AdminPort, Protocol):
    """What these tests use of the store."""


async def test_claim_waits_for_run_after_and_skips_leased(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock(), handlers=("a",))])
    assert await store.claim("w1", 10, clock() - timedelta(seconds=1), LEASE) == []  # not due yet
    [c] = await store.claim("w1", 10, clock(), LEASE)
    assert (c.handler, c.attempt) == ("a", 1)
    assert await store.claim("w2", 10, clock.advance(LEASE - 1), LEASE) == []  # leased

    retry_at = clock() + timedelta(minutes=5)
    [done] = await store.finish("w1", [finished(c, clock(), "pending", run_after=retry_at)])
    assert done.execution_id == c.id
    assert await store.claim("w2", 10, clock.advance(minutes=4), LEASE) == []
    [again] = await store.claim("w2", 10, clock.advance(minutes=1), LEASE)
    assert (again.id, again.attempt) == (c.id, 2)


async def test_two_concurrent_claimers_never_share_an_execution(
    store: Ports, other: Ports, clock: Clock
) -> None:
    n = 40
    await store.ingest([event(clock()) for _ in range(n)])
    got: list[list[str]] = [[], []]
    for _ in range(n):
        a, b = await asyncio.gather(
            store.claim("w1", 3, clock(), LEASE), other.claim("w2", 3, clock(), LEASE)
        )
        got[0].extend(str(c.id) for c in a)
        got[1].extend(str(c.id) for c in b)
        if not a and not b:
            break
    assert not set(got[0]) & set(got[1])
    assert len(got[0]) + len(got[1]) == n
    assert len(set(got[0] + got[1])) == n


async def test_finish_success_failure_and_dead(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock(), handlers=("ok", "retry", "die"), max_attempts=2)])
    claimed = {c.handler: c for c in await store.claim("w", 10, clock(), LEASE)}
    results = [
        finished(claimed["ok"], clock(), "succeeded"),
        finished(claimed["retry"], clock(), "pending", run_after=clock() + timedelta(seconds=10)),
        finished(claimed["die"], clock(), "dead"),
    ]
    assert len(await store.finish("w", results)) == 3
    statuses = await store.execution_statuses([c.id for c in claimed.values()])
    assert statuses == {
        claimed["ok"].id: "succeeded",
        claimed["retry"].id: "pending",
        claimed["die"].id: "dead",
    }
    [attempt] = await store.list_attempts(claimed["die"].id)
    assert (attempt.attempt, attempt.outcome, attempt.error_type) == (1, "failed", "ValueError")
    dead = await store.get_execution(claimed["die"].id)
    assert dead is not None and dead.last_error is not None and "boom" in dead.last_error


async def test_finish_of_plain_successes_alone_and_mixed(store: Ports, clock: Clock) -> None:
    """A batch of successes without a result (PostgreSQL sends fewer columns for it) and a
    batch that mixes them with a result and a failure record the same rows."""
    await store.ingest([event(clock(), handlers=("a", "b", "c", "d", "e"), max_attempts=2)])
    claimed = {c.handler: c for c in await store.claim("w", 10, clock(), LEASE)}
    started = clock()
    ended = clock.advance(2)

    def ok(handler: str, result: str | None = None) -> records.Finished:
        return dataclasses.replace(
            finished(claimed[handler], started, "succeeded"), ended_at=ended, result=result
        )

    assert len(await store.finish("w", [ok("a"), ok("b")])) == 2
    mixed = [ok("c"), ok("d", result='{"n": 1}'), finished(claimed["e"], clock(), "dead")]
    assert len(await store.finish("w", mixed)) == 3
    statuses = await store.execution_statuses([c.id for c in claimed.values()])
    assert [statuses[claimed[h].id] for h in "abcde"] == ["succeeded"] * 4 + ["dead"]
    for h in "abcd":
        [attempt] = await store.list_attempts(claimed[h].id)
        assert (attempt.attempt, attempt.worker_id, attempt.outcome) == (1, "w", "succeeded")
        assert (attempt.started_at, attempt.ended_at) == (started, ended)
        assert (attempt.error_type, attempt.error_message, attempt.traceback) == (None, None, None)
        execution = await store.get_execution(claimed[h].id)
        assert execution is not None and execution.last_error is None
        assert execution.result == ({"n": 1} if h == "d" else None)


async def test_finish_without_the_lease_changes_nothing(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock())])
    [c] = await store.claim("w1", 1, clock(), LEASE)
    assert await store.finish("someone-else", [finished(c, clock(), "succeeded")]) == []
    assert (await store.execution_statuses([c.id]))[c.id] == "running"


async def test_renew_extends_the_lease_of_the_holder_only(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock(), handlers=("a", "b"))])
    a, b = await store.claim("w1", 2, clock(), LEASE)
    assert await store.renew("w2", clock(), LEASE) == 0
    assert await store.renew("w1", clock.advance(LEASE - 5), LEASE, ids=[a.id]) == 1
    reaped = await store.reap(clock.advance(10))  # b's lease expired, a's was renewed
    assert [r.execution_id for r in reaped] == [b.id]
    assert (await store.execution_statuses([a.id]))[a.id] == "running"


async def test_reap_records_a_lost_attempt_without_spending_the_budget(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock(), max_attempts=3)])
    [c] = await store.claim("w1", 1, clock(), LEASE)
    assert await store.reap(clock.advance(LEASE - 1)) == []
    [r] = await store.reap(clock.advance(2))
    assert (r.execution_id, r.attempt, r.status, r.worker_id, r.losses) == (c.id, 1, "pending", "w1", 1)
    x = await store.get_execution(c.id)
    assert x is not None and (x.status, x.attempts, x.max_attempts) == ("pending", 1, 4)
    [attempt] = await store.list_attempts(c.id)
    assert (attempt.outcome, attempt.error_type) == ("lost", "LeaseExpired")
    # a lost execution runs alone: only a claim of lost ones takes it
    assert await store.claim("w2", 5, clock(), LEASE, lost=False) == []
    assert await store.lost_due(clock())
    [again] = await store.claim("w2", 5, clock(), LEASE, lost=True)
    assert (again.id, again.attempt, again.losses) == (c.id, 2, 1)
    # the late finish of the lost attempt changes nothing
    assert await store.finish("w1", [finished(c, clock(), "succeeded")]) == []


async def test_reap_marks_dead_after_max_losses(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock())])
    for loss in (1, 2):
        [c] = await store.claim("w", 1, clock(), LEASE)
        [r] = await store.reap(clock.advance(LEASE + 1), max_losses=2)
        assert (r.losses, r.status) == (loss, "pending" if loss < 2 else "dead")
    x = await store.get_execution(c.id)
    assert x is not None and x.status == "dead" and x.last_error is not None
    assert "lost 2 times" in x.last_error


async def test_release_gives_the_attempt_back(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock(), max_attempts=1)])
    [c] = await store.claim("w", 1, clock(), LEASE)
    assert await store.release("w") == 1
    x = await store.get_execution(c.id)
    assert x is not None and (x.status, x.max_attempts) == ("pending", 2)
    [attempt] = await store.list_attempts(c.id)
    assert attempt.outcome == "interrupted"


async def test_give_back_undoes_a_claim_that_never_started(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock(), max_attempts=1), event(clock(), max_attempts=1)])
    first, second = await store.claim("w1", 2, clock(), LEASE)
    assert await store.give_back("w2", [first.id]) == 0  # not its lease
    assert await store.give_back("w1", [first.id]) == 1
    assert await store.give_back("w1", [first.id]) == 0  # given back already
    x = await store.get_execution(first.id)
    assert x is not None and (x.status, x.attempts, x.max_attempts) == ("pending", 0, 1)
    assert await store.list_attempts(first.id) == []  # it did nothing: no attempt recorded
    [again] = await store.claim("w2", 10, clock(), LEASE)
    assert (again.id, again.attempt) == (first.id, 1)  # the same attempt, budget untouched
    y = await store.get_execution(second.id)
    assert y is not None and (y.status, y.attempts) == ("running", 1)  # not in ids: kept


async def test_each_claimed_execution_reads_its_own_input(store: Ports, clock: Clock) -> None:
    one, two = event(clock(), payload={"order": 1}), event(clock(), payload={"order": 2})
    await store.ingest([one, two])
    claimed = await store.claim("w", 10, clock(), LEASE)
    docs = {c.idempotency_key: c.document for c in claimed}
    assert docs == {one.idempotency_key: {"order": 1}, two.idempotency_key: {"order": 2}}
    for c in claimed:
        assert (c.source, c.event_type, c.input_error) == ("shop", "order.paid", None)
        assert c.headers == {"content-type": "application/json"}


async def test_reschedule_gives_the_attempt_back_and_needs_the_lease(store: Ports) -> None:
    clock = Clock()  # reschedule never sets run_after before the real time: start from it
    await store.ingest([event(clock(), max_attempts=1)])
    [c] = await store.claim("w1", 1, clock(), LEASE)
    later = clock() + timedelta(seconds=10)
    assert not await store.reschedule("w2", c.id, c.attempt, later, "RateLimited: test")
    assert await store.reschedule("w1", c.id, c.attempt, later, "RateLimited: test")
    assert not await store.reschedule("w1", c.id, c.attempt, later, "RateLimited: test")  # gone
    assert await store.list_attempts(c.id) == []  # no attempt row: it did no work
    assert await store.claim("w2", 1, clock.advance(9), LEASE) == []
    [again] = await store.claim("w2", 1, clock.advance(1), LEASE)
    assert (again.id, again.attempt) == (c.id, 1)  # the attempt number is reused


async def test_an_unreadable_input_fails_only_its_own_execution(store: Ports, clock: Clock) -> None:
    good = event(clock(), payload={"order": 1})
    bad = dataclasses.replace(event(clock()), payload=None, body=b"{not json")
    await store.ingest([good, bad])
    claimed = {c.idempotency_key: c for c in await store.claim("w", 10, clock(), LEASE)}
    assert claimed[good.idempotency_key].document == {"order": 1}
    assert claimed[good.idempotency_key].input_error is None
    broken = claimed[bad.idempotency_key]
    assert broken.document is None and broken.input_error is not None
    assert broken.input_error.startswith("JSONDecodeError")
