"""``Singleton(mode="cancel")`` against a running execution (SPEC 7 with SPEC 8's step
boundaries), in-process on SQLite and PostgreSQL: the running one stops at its next step, the
new one runs without waiting for it."""

from __future__ import annotations

import asyncio
from typing import Any

from solo_os import App, Context, Singleton, sources, testing


async def test_a_newer_singleton_cancels_the_running_one_at_its_next_step(database_url: str) -> None:
    app = App(service="singleton-test")
    app.source("cms", sources.hmac(secret_env="CMS_WEBHOOK_SECRET"))
    started = asyncio.Event()
    second_done = asyncio.Event()
    go_on = asyncio.Event()
    reached: list[int] = []

    @app.on("cms", "site.published", singleton=Singleton(key="site", mode="cancel"))
    async def rebuild(event: dict[str, Any], ctx: Context) -> int:
        n = event["n"]
        await ctx.step("first", lambda: None)
        if n == 1:
            started.set()
            await go_on.wait()  # still running when the newer event arrives
        await ctx.step("after", lambda: reached.append(n))
        if n == 2:
            second_done.set()
        return n

    async with testing.run(app, database_url=database_url, concurrency=4) as solo:
        await solo.client.send("cms", "site.published", {"site": "s1", "n": 1})
        drain = asyncio.create_task(solo.drain())
        await asyncio.wait_for(started.wait(), 10)
        await solo.client.send("cms", "site.published", {"site": "s1", "n": 2})
        await solo.client.send("cms", "site.published", {"site": "s2", "n": 3})  # another key
        # The new one runs while the old one is still in its handler.
        await asyncio.wait_for(second_done.wait(), 10)
        go_on.set()
        await drain
        xs = {str(x.result): x for x in await solo.executions(handler="rebuild")}
        old = [x for x in await solo.executions(handler="rebuild") if x.result is None]
        assert len(old) == 1
        attempts = await solo.attempts(old[0])
    assert reached == [2, 3] or reached == [3, 2]  # the old one stopped before "after"
    assert old[0].status == "cancelled"
    assert "singleton: cancelled in favour of a newer execution" in (old[0].last_error or "")
    assert [a.outcome for a in attempts] == ["cancelled"]
    assert xs["2"].status == "succeeded" and xs["3"].status == "succeeded"


async def test_a_pending_singleton_is_cancelled_at_once_and_skip_keeps_the_running_one(
    database_url: str,
) -> None:
    app = App(service="singleton-test")
    app.source("cms", sources.hmac(secret_env="CMS_WEBHOOK_SECRET"))
    started = asyncio.Event()
    go_on = asyncio.Event()
    ran: list[int] = []

    @app.on("cms", "export", singleton=Singleton(key="site"))
    async def export(event: dict[str, Any], ctx: Context) -> None:
        started.set()
        await go_on.wait()
        await ctx.step("after", lambda: ran.append(event["n"]))

    async with testing.run(app, database_url=database_url, concurrency=4) as solo:
        await solo.client.send("cms", "export", {"site": "s1", "n": 1})
        drain = asyncio.create_task(solo.drain())
        await asyncio.wait_for(started.wait(), 10)
        await solo.client.send("cms", "export", {"site": "s1", "n": 2})  # skipped: 1 runs
        go_on.set()
        await drain
        statuses = sorted(x.status for x in await solo.executions(handler="export"))
    assert ran == [1] and statuses == ["skipped", "succeeded"]
