"""Durable workflows (SPEC section 8) in-process, on SQLite and PostgreSQL, on the test clock:
sleep, wait_for_event, send, invoke, cancel_on, stored return values, replay."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from solo_os import App, CancelOn, Context, InvokeError, NonRetryable, Retry, sources, testing
from solo_os.store import _workflow


def wf_app() -> App:
    app = App(service="wf-test")
    app.source("shop", sources.hmac(secret_env="SHOP_WEBHOOK_SECRET"))
    return app


async def test_sleep_suspends_without_a_slot_or_an_attempt_and_resumes_at_its_time(
    database_url: str,
) -> None:
    app = wf_app()
    ran: list[str] = []

    @app.on("shop", "trial.started", retry=Retry(max_attempts=1))
    async def remind(event: dict[str, Any], ctx: Context) -> str:
        await ctx.step("welcome", lambda: ran.append("welcome") or "sent")
        await ctx.sleep("three-days", timedelta(days=3))
        ran.append("reminder")
        return "reminded"

    @app.on("shop", "other")
    async def other(event: dict[str, Any], ctx: Context) -> None:
        ran.append("other")

    async with testing.run(app, database_url=database_url, concurrency=1) as solo:
        await solo.client.send("shop", "trial.started", {"user": "u1"})
        await solo.drain()
        [x] = await solo.executions(handler="remind")
        assert x.status == "waiting" and ran == ["welcome"]
        assert x.run_after is not None and x.run_after > solo.clock() + timedelta(days=2)
        # One worker slot: the sleeping execution holds none, other work runs.
        await solo.client.send("shop", "other", {})
        await solo.drain()
        assert ran == ["welcome", "other"]
        await solo.advance(days=3, minutes=1)
        [x] = await solo.executions(handler="remind")
        attempts = await solo.attempts(x)
        calls = await solo.store.workflow.list_calls(x.id)
    assert x.status == "succeeded" and x.result == "reminded"
    assert ran == ["welcome", "other", "reminder"]  # the step before the sleep ran once
    assert [a.outcome for a in attempts] == ["suspended", "succeeded"]
    assert x.max_attempts == 2  # the suspended attempt was given back (budget of 1 left intact)
    assert [(c.kind, c.name, c.status) for c in calls] == [("sleep", "three-days", "done")]


async def test_wait_for_event_resumes_with_the_match_ignores_others_and_times_out(
    database_url: str,
) -> None:
    app = wf_app()
    got: dict[str, Any] = {}

    @app.on("shop", "checkout.completed")
    async def checkout(event: dict[str, Any], ctx: Context) -> Any:
        paid = await ctx.wait_for_event(
            "payment", "shop", "payment.succeeded", match={"order.id": event["order"]},
            timeout=timedelta(hours=1),
        )
        got[event["order"]] = paid
        return {"paid": paid is not None}

    async with testing.run(app, database_url=database_url) as solo:
        await solo.client.send("shop", "checkout.completed", {"order": "o1"})
        await solo.client.send("shop", "checkout.completed", {"order": "o2"})
        await solo.drain()
        assert {x.status for x in await solo.executions(handler="checkout")} == {"waiting"}
        await solo.client.send("shop", "payment.succeeded", {"order": {"id": "o9"}, "n": 0})
        await solo.drain()
        assert got == {}  # no order matches
        await solo.client.send("shop", "payment.succeeded", {"order": {"id": "o1"}, "n": 1})
        await solo.drain()
        assert got == {"o1": {"order": {"id": "o1"}, "n": 1}}
        await solo.advance(hours=1, minutes=1)
        xs = {x.result["paid"]: x.status for x in await solo.executions(handler="checkout")}
    assert got == {"o1": {"order": {"id": "o1"}, "n": 1}, "o2": None}
    assert xs == {True: "succeeded", False: "succeeded"}


async def test_an_event_accepted_before_the_wait_is_reached_still_resumes_it(
    database_url: str,
) -> None:
    app = wf_app()
    got: list[Any] = []

    @app.on("shop", "checkout.completed")
    async def checkout(event: dict[str, Any], ctx: Context) -> None:
        await ctx.sleep("a-while", 60)  # the payment arrives during this sleep
        got.append(await ctx.wait_for_event(
            "payment", "shop", "payment.succeeded", match={"order": event["order"]}, timeout=3600
        ))

    async with testing.run(app, database_url=database_url) as solo:
        await solo.client.send("shop", "checkout.completed", {"order": "o1"})
        await solo.drain()
        await solo.client.send("shop", "payment.succeeded", {"order": "o1", "paid": True})
        await solo.drain()
        await solo.advance(seconds=61)
        [x] = await solo.executions(handler="checkout")
    assert got == [{"order": "o1", "paid": True}] and x.status == "succeeded"


async def test_one_event_resumes_many_waiters(database_url: str) -> None:
    app = wf_app()
    seen: list[int] = []

    @app.on("shop", "waiter")
    async def waiter(event: dict[str, Any], ctx: Context) -> None:
        release = await ctx.wait_for_event("go", "shop", "release", match={"batch": "b"}, timeout=60)
        seen.append(event["n"] if release else -1)

    async with testing.run(app, database_url=database_url) as solo:
        for n in range(20):
            await solo.client.send("shop", "waiter", {"n": n})
        await solo.drain()
        await solo.client.send("shop", "release", {"batch": "b"})
        await solo.drain()
    assert sorted(seen) == list(range(20))


async def test_send_is_exactly_once_across_a_retry_of_the_sender(database_url: str) -> None:
    app = wf_app()
    received: list[Any] = []

    @app.on("shop", "order.fulfilled", retry=Retry(max_attempts=3, base_delay=0.0))
    async def fulfil(event: dict[str, Any], ctx: Context) -> str:
        sent = await ctx.send("tell", "order.shipped", {"order": event["order"]})
        if ctx.attempt == 1:
            raise ConnectionError("after sending, before finishing")
        return str(sent)

    @app.on("internal", "order.shipped")
    async def shipped(event: dict[str, Any], ctx: Context) -> None:
        assert ctx.event is not None and ctx.event.source == "internal"
        received.append(event)

    async with testing.run(app, database_url=database_url) as solo:
        await solo.client.send("shop", "order.fulfilled", {"order": "o1"})
        await solo.drain(skip_retries=True)
        [x] = await solo.executions(handler="fulfil")
        events = await solo.events(source="internal")
    assert x.status == "succeeded" and x.attempts == 2
    assert received == [{"order": "o1"}]
    assert len(events) == 1 and x.result == str(events[0].id)


async def test_invoke_returns_the_childs_value_and_raises_invoke_error_on_a_dead_child(
    database_url: str,
) -> None:
    app = wf_app()
    outcome: dict[str, Any] = {}

    @app.on("internal", "never", retry=Retry(max_attempts=1))
    async def price(data: dict[str, Any], ctx: Context) -> dict[str, int]:
        if data["sku"] == "bad":
            raise NonRetryable("no such sku")
        return {"cents": 100 * data["qty"]}

    @app.on("shop", "quote")
    async def quote(event: dict[str, Any], ctx: Context) -> Any:
        value = await ctx.invoke("price", price, {"sku": event["sku"], "qty": 3}, timeout=600)
        outcome["value"] = value
        try:
            await ctx.invoke("bad", "price", {"sku": "bad", "qty": 1})
        except InvokeError as exc:
            outcome["error"] = exc.status
        return value

    async with testing.run(app, database_url=database_url) as solo:
        await solo.client.send("shop", "quote", {"sku": "a"})
        await solo.drain()
        [parent] = await solo.executions(handler="quote")
        children = await solo.executions(handler="price")
        calls = await solo.store.workflow.list_calls(parent.id)
    assert outcome == {"value": {"cents": 300}, "error": "dead"}
    assert parent.status == "succeeded" and parent.result == {"cents": 300}
    assert sorted(c.status for c in children) == ["dead", "succeeded"]
    assert {c.parent_id for c in children} == {parent.id}  # the child names its parent
    assert {c.child_id for c in calls} == {c.id for c in children}  # and the parent its children


async def test_cancel_on_cancels_only_the_matching_executions(database_url: str) -> None:
    app = wf_app()

    @app.on(
        "shop", "trial.started",
        cancel_on=[CancelOn("shop", "subscription.paid", match={"customer": "user.id"})],
    )
    async def trial(event: dict[str, Any], ctx: Context) -> None:
        await ctx.sleep("three-days", timedelta(days=3))

    async with testing.run(app, database_url=database_url) as solo:
        for user in ("u1", "u2", "u3"):
            await solo.client.send("shop", "trial.started", {"user": {"id": user}})
        await solo.drain()
        await solo.client.send("shop", "subscription.paid", {"customer": "u2"})
        await solo.drain()
        by_user = {}
        for x in await solo.executions(handler="trial"):
            [ev] = [e for e in await solo.events() if e.id == x.event_id]
            by_user[ev.payload["user"]["id"]] = x.status
        assert by_user == {"u1": "waiting", "u2": "cancelled", "u3": "waiting"}
        await solo.advance(days=3, minutes=1)
        statuses = sorted(x.status for x in await solo.executions(handler="trial"))
    assert statuses == ["cancelled", "succeeded", "succeeded"]


async def test_a_running_execution_stops_at_its_next_step_after_cancel_on(database_url: str) -> None:
    app = wf_app()
    started = asyncio.Event()
    go_on = asyncio.Event()
    reached: list[str] = []

    @app.on("shop", "job", cancel_on=[CancelOn("shop", "stop", match={"id": "id"})])
    async def job(event: dict[str, Any], ctx: Context) -> None:
        started.set()
        await go_on.wait()
        await ctx.step("after", lambda: reached.append("after"))

    async with testing.run(app, database_url=database_url) as solo:
        await solo.client.send("shop", "job", {"id": 1})
        drain = asyncio.create_task(solo.drain())
        await asyncio.wait_for(started.wait(), 10)
        await solo.client.send("shop", "stop", {"id": 1})
        go_on.set()
        await drain
        [x] = await solo.executions(handler="job")
    assert x.status == "cancelled" and reached == []


async def test_a_name_used_twice_is_an_error_across_steps_and_calls(database_url: str) -> None:
    app = wf_app()

    @app.on("shop", "twice", retry=Retry(max_attempts=1))
    async def twice(event: dict[str, Any], ctx: Context) -> None:
        await ctx.step("same", lambda: 1)
        await ctx.sleep("same", 1)

    async with testing.run(app, database_url=database_url) as solo:
        await solo.client.send("shop", "twice", {})
        await solo.drain()
        [x] = await solo.executions(handler="twice")
    assert x.status == "dead" and "used twice" in (x.last_error or "")


async def test_replaying_a_dead_execution_continues_from_its_memoized_state(
    database_url: str,
) -> None:
    app = wf_app()
    runs: list[str] = []
    broken = True

    @app.on("shop", "flow", retry=Retry(max_attempts=1))
    async def flow(event: dict[str, Any], ctx: Context) -> None:
        await ctx.step("first", lambda: runs.append("first"))
        await ctx.sleep("nap", 30)
        runs.append("after-nap")
        if broken:
            raise NonRetryable("broken after the sleep")

    async with testing.run(app, database_url=database_url) as solo:
        await solo.client.send("shop", "flow", {})
        await solo.drain()
        await solo.advance(seconds=31)
        [x] = await solo.executions(handler="flow")
        assert x.status == "dead"
        broken = False
        await solo.replay(x)
        await solo.drain()
        [x] = await solo.executions(handler="flow")
    assert x.status == "succeeded"
    assert runs == ["first", "after-nap", "after-nap"]  # no second step, no second sleep


async def test_retention_never_prunes_a_waiting_execution(database_url: str) -> None:
    app = wf_app()

    @app.on("shop", "long")
    async def long_wait(event: dict[str, Any], ctx: Context) -> None:
        await ctx.wait_for_event("w", "shop", "never", timeout=timedelta(days=400))

    async with testing.run(app, database_url=database_url) as solo:
        await solo.client.send("shop", "long", {})
        await solo.drain()
        pruned = await solo.store.prune(timedelta(days=1), now=solo.clock() + timedelta(days=365))
        assert pruned.executions == 0
        [x] = await solo.executions(handler="long_wait")
        calls = await solo.store.workflow.list_calls(x.id)
    assert x.status == "waiting" and [c.status for c in calls] == ["waiting"]
    assert _workflow.FAR.year == 9999


async def test_internal_events_from_outside_and_the_timeline_in_executions_show(
    database_url: str,
) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    app = wf_app()
    got: list[Any] = []

    @app.on("internal", "nudge")
    async def nudged(event: dict[str, Any], ctx: Context) -> None:
        got.append(event)

    @app.on("shop", "order")
    async def order(event: dict[str, Any], ctx: Context) -> str:
        await ctx.step("charge", lambda: "ch_1")
        await ctx.send("tell", "nudge", {"from": "order"})
        await ctx.wait_for_event("ack", "internal", "ack", match={"order": event["id"]}, timeout=60)
        return "ok"

    async with testing.run(app, database_url=database_url) as solo:
        await solo.client.send("shop", "order", {"id": 7})
        await solo.drain()
        posted = await solo.client.send("internal", "nudge", {"from": "http"})  # signed, over HTTP
        assert posted.status == "accepted"
        await app.send("ack", {"order": 7})  # from a script: stamped with the real time
        await solo.advance(seconds=5)
        [x] = await solo.executions(handler="order")
        env = {**os.environ, "DATABASE_URL": database_url}
        cli = str(Path(sys.executable).parent / "solo-os")
        shown = subprocess.run(
            [cli, "executions", "show", str(x.id), "--json"], env=env, capture_output=True,
            text=True, timeout=60, check=True,
        )
    data = json.loads(shown.stdout)
    assert x.status == "succeeded" and sorted(e["from"] for e in got) == ["http", "order"]
    entries = {e["name"]: e for e in data["timeline"]}
    assert {(e["kind"], e["name"], e["status"]) for e in data["timeline"]} == {
        ("step", "charge", "done"), ("send", "tell", "done"), ("wait", "ack", "done")
    }
    assert data["result"] == "ok" and entries["ack"]["result"] == {"order": 7}
    assert entries["ack"]["waits_for"] == {"source": "internal", "type": "ack", "match": {"order": 7}}


async def test_an_operator_cancels_a_waiting_child_and_its_parent_gets_invoke_error(
    database_url: str,
) -> None:
    from solo_os.ops import cancel as cancel_ops

    app = wf_app()
    seen: list[str] = []

    @app.on("internal", "child")
    async def child(data: dict[str, Any], ctx: Context) -> None:
        await ctx.sleep("forever", timedelta(days=30))

    @app.on("shop", "parent")
    async def parent(event: dict[str, Any], ctx: Context) -> None:
        try:
            await ctx.invoke("kid", child, {})
        except InvokeError as exc:
            seen.append(exc.status)

    async with testing.run(app, database_url=database_url) as solo:
        await solo.client.send("shop", "parent", {})
        await solo.drain()
        [kid] = await solo.executions(handler="child")
        assert kid.status == "waiting"
        assert await cancel_ops.cancel_one(solo.store, kid.id, solo.clock()) == [kid.id]
        await solo.drain()
        [p] = await solo.executions(handler="parent")
    assert seen == ["cancelled"] and p.status == "succeeded"
