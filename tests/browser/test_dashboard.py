"""End to end in a real browser: sign in, find a dead execution, replay it, see it succeed.

Also saves a screenshot of every main page (``SOLO_OS_SCREENSHOTS=docs/dashboard`` refreshes
the ones in the docs) and fails on any console error or uncaught page error.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import ConsoleMessage, Page, async_playwright, expect

from solo_os import App, Context, Retry, sources
from solo_os import store as store_mod
from tests import helpers
from tests.apps.billing import InvoicePaid
from tests.browser.conftest import ADMIN_TOKEN, CHROMIUM_ARGS, live_server

pytestmark = pytest.mark.slow


class Switch:
    """Whether the payment provider the handler calls is down."""

    broken = True


def flaky_app(switch: Switch) -> App:
    app = App(service="dashboard-e2e")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "invoice.paid", schema=InvoicePaid, retry=Retry(max_attempts=2, base_delay=0))
    async def fulfil(event: InvoicePaid, ctx: Context) -> None:
        await ctx.step("reserve-stock", lambda: {"reserved": str(event.id)})
        if switch.broken:
            raise ConnectionError("payment provider unreachable")
        await ctx.step("send-receipt", lambda: {"receipt": "r-" + str(event.id)[:8]})

    @app.cron("30 2 * * *", name="nightly-report", timezone="Europe/Berlin")
    async def nightly_report(ctx: Context) -> None:
        await ctx.step("totals", lambda: {"day": ctx.scheduled_at.date().isoformat()})
        if switch.broken:
            raise ConnectionError("report store unreachable")

    @app.on("billing", "invoice.paid", name="audit")
    def audit(event: dict[str, Any], ctx: Context) -> None:
        return None

    return app


async def _post(client: httpx.AsyncClient, payload: Any, **kw: Any) -> httpx.Response:
    body, headers = helpers.delivery(payload, **kw)
    return await client.post("/webhooks/billing", content=body, headers=headers)


async def _statuses(store: store_mod.Store) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for x in await store.list_executions(store_mod.Filters(limit=0)):
        out.setdefault(x.handler, []).append(x.status)
    return out


async def test_sign_in_find_dead_execution_replay_it_and_see_it_succeed(
    chromium: str, sqlite_url: str, screenshots: Path
) -> None:
    switch = Switch()
    async with live_server(flaky_app(switch), sqlite_url) as (base, rt):
        store = rt.store
        assert store is not None
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            # some history for the overview: successes, a rejected delivery, one dead letter
            switch.broken = False
            for i in range(4):
                assert (await _post(client, helpers.invoice(), key=f"ok-{i}")).status_code == 200
            bad = helpers.invoice(amount_cents=0, currency="EURO")
            assert (await _post(client, bad, key="bad-1")).status_code == 400
            await helpers.eventually(lambda: _all(store, lambda st: st.count("succeeded") == 4, "fulfil"))
            switch.broken = True
            for key in ("will-die-1", "will-die-2"):
                r = await _post(client, helpers.invoice(), key=key)
                assert r.json()["status"] == "accepted"
            await helpers.eventually(lambda: _all(store, lambda st: st.count("dead") == 2, "fulfil"))
        dead_ids = await store.matching_ids(store_mod.Filters(status="dead", limit=0))

        console_errors: list[str] = []
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(viewport={"width": 1360, "height": 900})
                page = await context.new_page()
                page.on("console", lambda m: _record(m, console_errors))
                page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))

                # not signed in: the dashboard sends us to the sign-in page
                await page.goto(f"{base}/dashboard")
                await page.wait_for_url(f"{base}/dashboard/login")
                await page.screenshot(path=str(screenshots / "login.png"))
                await page.fill("#token", ADMIN_TOKEN)
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{base}/dashboard")
                await page.get_by_role("heading", name="Overview").wait_for()
                await page.locator(".card-value").first.wait_for()
                await _shot(page, screenshots / "overview.png")

                # the dead letters: select one and replay it from the list
                await _nav(page, "Dead letters")
                rows = page.locator("table.grid tbody tr")
                await rows.nth(1).wait_for()
                assert await rows.count() == 2
                await _shot(page, screenshots / "dead-letters.png")
                switch.broken = False  # the provider is back
                chosen = await rows.first.get_by_role("link", name="fulfil").get_attribute("href")
                await rows.first.locator("input[type=checkbox]").check()
                await page.get_by_role("button", name="Replay selected (1)").click()
                await page.locator("#toast").get_by_text("Replayed 1").wait_for()
                await expect(rows).to_have_count(1)
                chosen_id = uuid.UUID((chosen or "").rsplit("/", 1)[-1])
                assert chosen_id in dead_ids
                await helpers.eventually(lambda: _succeeded(store, chosen_id))

                # the other one: open it, see why it died, replay it, watch it succeed
                switch.broken = True
                remaining = (await rows.first.get_by_role("link", name="fulfil").get_attribute("href")) or ""
                await rows.first.get_by_role("link", name="fulfil").click()
                await expect(page).to_have_url(re.compile(re.escape(remaining) + "$"))
                head = page.locator(".head")
                await head.locator(".badge.dead").wait_for()
                assert await page.locator("ol.timeline li.failed").count() == 2
                await _shot(page, screenshots / "execution-dead.png")
                switch.broken = False
                await page.get_by_role("button", name="Replay").click()
                await page.locator("#toast").get_by_text("Replayed").wait_for()
                await head.locator(".badge.succeeded").wait_for(timeout=20_000)
                await page.locator("ol.timeline li.succeeded").wait_for()
                assert await page.locator("ol.timeline li.step").count() == 2
                await _shot(page, screenshots / "execution.png")

                # the other main pages render with data and without errors
                await _nav(page, "Events")
                await page.locator("table.grid tbody tr").first.wait_for()
                assert await page.locator("table.grid tbody tr").count() == 7
                await _shot(page, screenshots / "events.png")
                await (
                    page.locator("table.grid tbody tr", has_text="rejected")
                    .first.get_by_role("link", name="invoice.paid")
                    .click()
                )
                await page.get_by_role("heading", name="Validation errors").wait_for()
                await _shot(page, screenshots / "event-rejected.png")
                await _nav(page, "Executions")
                await page.locator("table.grid tbody tr").first.wait_for()
                await _shot(page, screenshots / "executions.png")
                await _nav(page, "Sources")
                await page.locator("table.grid tbody tr").first.wait_for()
                await _shot(page, screenshots / "sources.png")
                # schedules: run one now, see it in the history, pause it
                await _nav(page, "Schedules")
                row = page.locator("table.grid tbody tr", has_text="nightly-report")
                await row.get_by_role("button", name="Run now").click()
                await page.locator("#toast").get_by_text("Started nightly-report").wait_for()
                await row.locator(".badge.succeeded").wait_for(timeout=20_000)
                await _shot(page, screenshots / "schedules.png")
                await row.get_by_role("link", name="nightly-report").click()
                await page.get_by_role("heading", name="History").wait_for()
                history = page.locator("table.grid tbody tr")
                await expect(history).to_have_count(1)
                await history.first.locator(".badge.succeeded").wait_for()
                await page.get_by_role("button", name="Pause").click()
                await page.locator(".head .badge.paused").wait_for()
                await _shot(page, screenshots / "schedule.png")
                await page.get_by_role("button", name="Resume").click()
                await page.get_by_role("button", name="Pause").wait_for()
                await _nav(page, "Overview")
                await page.locator(".card-value").first.wait_for()
            finally:
                await browser.close()

        statuses = await _statuses(store)
        assert statuses["fulfil"].count("succeeded") == 6
        assert "dead" not in statuses["fulfil"]
        assert console_errors == []


async def _succeeded(store: store_mod.Store, execution_id: uuid.UUID) -> bool:
    x = await store.get_execution(execution_id)
    return x is not None and x.status == "succeeded"


async def _all(store: store_mod.Store, check: Any, handler: str) -> bool:
    return bool(check((await _statuses(store)).get(handler, [])))


def _record(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type in ("error", "assert"):
        errors.append(f"console.{message.type}: {message.text}")


async def _nav(page: Page, name: str) -> None:
    await page.locator("nav").get_by_role("link", name=name).click()
    await page.get_by_role("heading", name=name, exact=True).wait_for()


async def _shot(page: Page, path: Path) -> None:
    await asyncio.sleep(0.2)  # let a just-started refresh land so the picture is settled
    await page.screenshot(path=str(path), full_page=True)
