"""The dashboard's working tools in a real browser: search, time ranges, the webhook/cron filter,
durations, handler logs, re-run / resend / cancel / purge behind a confirmation, the activity
chart; then dark mode and a 390 px wide phone screen on every page.

Screenshots go where ``SOLO_OS_SCREENSHOTS`` says (``docs/dashboard`` refreshes the docs').
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from solo_os import App, Context, Retry, RetryAfter, sources
from solo_os import store as store_mod
from solo_os.core import records
from tests import helpers
from tests.browser.conftest import ADMIN_TOKEN, CHROMIUM_ARGS, live_server
from tests.browser.test_dashboard import _nav, _record, _shot

pytestmark = pytest.mark.slow
BEARER = {"authorization": f"Bearer {ADMIN_TOKEN}"}


class Switch:
    broken = False


def shop_app(switch: Switch) -> App:
    app = App(service="dashboard-features")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "invoice.paid", retry=Retry(max_attempts=2, base_delay=0))
    async def fulfil(event: dict[str, Any], ctx: Context) -> None:
        ctx.log.info("charging customer", customer=event["customer"], api_token="tok-never-shown")
        await ctx.step("reserve", lambda: {"ok": True})
        if switch.broken:
            ctx.log.error("payment provider said no", status=503)
            raise ConnectionError("payment provider unreachable")
        ctx.log.info("charged", amount_cents=event["amount_cents"])

    @app.on("billing", "invoice.paid", name="audit")
    def audit(event: dict[str, Any], ctx: Context) -> None:
        ctx.log.info("audited")

    @app.on("billing", "invoice.later", name="later")
    async def later(event: dict[str, Any], ctx: Context) -> None:
        raise RetryAfter(3600, "the warehouse opens at nine")

    @app.cron("30 2 * * *", name="nightly-report")
    async def nightly_report(ctx: Context) -> None:
        ctx.log.info("report written")

    return app


async def _post(client: httpx.AsyncClient, payload: Any, **kw: Any) -> httpx.Response:
    body, headers = helpers.delivery(payload, **kw)
    return await client.post("/webhooks/billing", content=body, headers=headers)


async def _settled(store: store_mod.Store) -> bool:
    rows = await store.list_executions(store_mod.Filters(limit=0))
    return all(x.status != "running" and (x.status != "pending" or x.handler == "later") for x in rows)


async def _count(store: store_mod.Store, **filters: Any) -> int:
    return len(await store.list_executions(store_mod.Filters(limit=0, **filters)))


async def _seed(base: str, store: store_mod.Store) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for i, customer in enumerate(["cus_plain", "cus_needle_42", "cus_other"]):
            r = await _post(client, helpers.invoice(customer=customer), key=f"order-{i}")
            assert r.json()["status"] == "accepted"
        later = await _post(client, {"order": "later-1"}, key="later-1", event_type="invoice.later")
        assert later.json()["status"] == "accepted"
        r = await client.post("/api/schedules/nightly-report/trigger", headers=BEARER)
        assert r.status_code == 200, r.text
        await helpers.eventually(lambda: _settled(store))
        events = (await client.get("/api/events", headers=BEARER, params={"q": "order-1"})).json()["items"]
    return {"needle_event": events[0]}


async def _sign_in(browser: Browser, base: str, errors: list[str], **options: Any) -> Page:
    context = await browser.new_context(**options)
    page = await context.new_page()
    page.on("console", lambda m: _record(m, errors))
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    await page.goto(f"{base}/dashboard/login")
    await page.fill("#token", ADMIN_TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/dashboard")
    await page.get_by_role("heading", name="Overview").wait_for()
    return page


async def _confirm(page: Page, button: str, expect_text: str, yes: str) -> None:
    """Click an action; it asks first: "Keep" leaves everything as is, then do it for real."""
    await page.get_by_role("button", name=button).click()
    box = page.get_by_role("alertdialog")
    await expect(box).to_contain_text(expect_text)
    await box.get_by_role("button", name="Keep").click()
    await expect(box).to_have_count(0)
    await page.get_by_role("button", name=button).click()
    await page.get_by_role("alertdialog").get_by_role("button", name=yes).click()


async def test_search_filters_durations_logs_actions_and_chart(
    chromium: str, sqlite_url: str, screenshots: Path
) -> None:
    switch = Switch()
    async with live_server(shop_app(switch), sqlite_url) as (base, rt):
        store = rt.store
        assert store is not None
        seeded = await _seed(base, store)
        errors: list[str] = []
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = await _sign_in(browser, base, errors, viewport={"width": 1360, "height": 900})

                # the chart: 24 hourly buckets on whole UTC hours, the last the current one
                buckets = page.locator("svg.chart g.bucket")
                await expect(buckets).to_have_count(24)
                await expect(page.locator("svg.chart g.bucket.now")).to_have_count(1)
                labels = await page.locator("svg.chart text.tick-label").all_text_contents()
                assert 4 <= len(labels) <= 9, labels
                assert all(re.fullmatch(r"\d\d:00|[A-Z][a-z]{2} \d{1,2}", t) for t in labels), labels
                now_bar = page.locator("svg.chart g.bucket.now rect.deliveries")
                assert float(await now_bar.get_attribute("height") or 0) > 0
                await expect(page.locator(".legend")).to_contain_text("UTC")

                # search from the header: payload text, then an idempotency key
                await page.fill("#search", "NEEDLE")
                await page.press("#search", "Enter")
                await page.get_by_role("heading", name="Search").wait_for()
                events_panel = page.locator(
                    ".panel", has=page.get_by_role("heading", name=re.compile("^Events"))
                )
                await expect(events_panel.locator("tbody tr")).to_have_count(1)
                await expect(events_panel).to_contain_text("order-1")
                await _shot(page, screenshots / "search.png")
                await page.fill("#search", "order-2")
                await page.press("#search", "Enter")
                runs_panel = page.locator(
                    ".panel", has=page.get_by_role("heading", name=re.compile("^Executions"))
                )
                await expect(runs_panel.locator("tbody tr")).to_have_count(2)

                # events: a time range preset and a custom range in UTC
                await _nav(page, "Events")
                rows = page.locator("table.grid tbody tr")
                await expect(rows).to_have_count(4)
                await page.get_by_label("Time range").select_option("15m")
                await page.get_by_role("button", name="Filter").click()
                await expect(page).to_have_url(re.compile(r"range=15m"))
                await expect(rows).to_have_count(4)
                await page.get_by_label("Time range").select_option("custom")
                await page.get_by_label("From (UTC)").fill("2030-01-01T00:00")
                await page.get_by_role("button", name="Filter").click()
                await expect(page.get_by_text("No events match.")).to_be_visible()
                await page.get_by_label("From (UTC)").fill("2020-01-01T00:00")
                await page.get_by_label("To (UTC)").fill("2030-01-01T00:00")
                await page.get_by_role("button", name="Filter").click()
                await expect(rows).to_have_count(4)
                await page.get_by_label("Search id, key, correlation id, payload").fill("needle")
                await page.get_by_role("button", name="Filter").click()
                await expect(rows).to_have_count(1)

                # executions: webhook/cron filter, durations in the list
                await _nav(page, "Executions")
                await page.get_by_label("Kind").select_option("cron")
                await page.get_by_role("button", name="Filter").click()
                await expect(rows).to_have_count(1)
                await expect(rows.first).to_contain_text("nightly-report")
                await page.get_by_label("Kind").select_option("webhook")
                await page.get_by_role("button", name="Filter").click()
                await expect(rows).to_have_count(7)
                await expect(page.locator("table.grid tbody")).not_to_contain_text("nightly-report")
                durations = await page.locator("table.grid tbody td:nth-child(6)").all_inner_texts()
                done = [d for d in durations if d != "—"]
                assert len(done) == 7 and all(re.fullmatch(r"\d+(\.\d+)? (ms|s)", d) for d in done), durations
                await page.get_by_label("Kind").select_option("")
                await page.get_by_role("button", name="Filter").click()
                await expect(rows).to_have_count(8)
                await _shot(page, screenshots / "executions-filtered.png")

                # an execution's logs, redacted, with its run time; times in UTC
                await page.goto(f"{base}/dashboard#/events/{seeded['needle_event']['id']}")
                await (
                    page.locator("table.grid tbody tr", has_text="fulfil")
                    .get_by_role("link", name="fulfil")
                    .click()
                )
                await page.get_by_role("heading", name="Logs").wait_for()
                logs = page.locator("ol.logs li")
                await expect(logs.last).to_contain_text("charged")
                messages = await page.locator("ol.logs .msg").all_text_contents()
                # ctx.step's own debug line shows when debug is on (it is here)
                assert [m for m in messages if m != "step.completed"] == ["charging customer", "charged"]
                await expect(logs.first).to_contain_text("charging customer")
                await expect(logs.first).to_contain_text("customer=cus_needle_42")
                await expect(logs.first).to_contain_text("api_token=[redacted]")
                await expect(page.locator("main")).not_to_contain_text("tok-never-shown")
                await expect(page.locator("dl.facts")).to_contain_text(
                    re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
                )
                await expect(page.locator("dl.facts")).to_contain_text(re.compile(r"Run time\s*\d"))
                await _shot(page, screenshots / "execution-logs.png")

                # re-run a succeeded execution: a new one runs, the old one stays
                old_url = page.url
                before = await _count(store, handler="fulfil")
                await _confirm(page, "Re-run…", "Run fulfil again as a new execution", "Yes, re-run")
                await expect(page).not_to_have_url(old_url)
                await page.locator(".head .badge.succeeded").wait_for(timeout=20_000)
                assert await _count(store, handler="fulfil") == before + 1

                # resend the event: its two handlers run again as new executions
                await page.goto(f"{base}/dashboard#/events/{seeded['needle_event']['id']}")
                await page.get_by_role("heading", name="Executions").wait_for()
                await _confirm(page, "Resend…", "Run this event's handlers again", "Yes, resend")
                await page.locator("#toast").get_by_text("Resent: 2 new execution(s).").wait_for()
                await expect(page.locator("table.grid tbody tr", has_text="fulfil")).to_have_count(
                    3, timeout=20_000
                )
                await _shot(page, screenshots / "event-resent.png")

                # cancel the pending one (it waits an hour for a retry)
                await _nav(page, "Executions")
                await page.get_by_label("Status").select_option("pending")
                await page.get_by_role("button", name="Filter").click()
                await expect(rows).to_have_count(1)
                await rows.first.get_by_role("link", name="later").click()
                await page.locator(".head .badge.pending").wait_for()
                await _confirm(page, "Cancel…", "Cancel this execution? It will not run.", "Yes, cancel it")
                await page.locator(".head .badge.cancelled").wait_for()
                assert await _count(store, status="cancelled") == 1

                # and the bulk cancel, from the filtered list
                async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                    for key in ("later-2", "later-3"):
                        await _post(client, {"n": key}, key=key, event_type="invoice.later")
                await helpers.eventually(lambda: _settled(store))
                await page.goto(f"{base}/dashboard#/executions?status=pending")
                await expect(rows).to_have_count(2)
                await page.get_by_role("button", name="Cancel all matching…").click()
                ask = page.get_by_role("alertdialog")
                await expect(ask).to_contain_text("Cancel 2 pending execution(s)?")
                await ask.get_by_role("button", name="Yes, cancel them").click()
                await page.locator("#toast").get_by_text("Cancelled 2 execution(s).").wait_for()
                await expect(page.get_by_text("No executions match.")).to_be_visible()
                assert await _count(store, status="cancelled") == 3

                # purge a dead letter (after a confirmation); its event stays
                switch.broken = True
                async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                    await _post(client, helpers.invoice(customer="cus_doomed"), key="doomed")
                await helpers.eventually(lambda: _has(store, "dead", 1))
                await _nav(page, "Dead letters")
                await expect(rows).to_have_count(1)
                await page.get_by_label("Time range").select_option("custom")
                await page.get_by_label("To (UTC)").fill("2020-01-01T00:00")
                await page.get_by_role("button", name="Filter").click()
                await expect(page.get_by_text("No dead letters.")).to_be_visible()
                await page.get_by_label("Time range").select_option("15m")
                # an edited, unapplied filter survives the 5 s background refresh (it once
                # redrew the form from the page's state and threw the edit away)
                await page.evaluate("document.activeElement && document.activeElement.blur()")
                await page.wait_for_timeout(6000)
                await expect(page.get_by_label("Time range")).to_have_value("15m")
                await page.get_by_role("button", name="Filter").click()
                await expect(page).to_have_url(re.compile(r"#/dead\?range=15m$"))
                await expect(rows).to_have_count(1)
                await rows.first.locator("input[type=checkbox]").check()
                await _confirm(page, "Purge selected…", "Delete 1 dead execution(s)", "Yes, purge")
                await page.locator("#toast").get_by_text("Purged 1 execution(s).").wait_for()
                await expect(page.get_by_text("No dead letters.")).to_be_visible()
                assert await _count(store, status="dead") == 0
                assert len(await store.list_events(store_mod.Filters(limit=0))) == 7
            finally:
                await browser.close()
        assert errors == []


async def test_an_edit_made_while_a_background_refresh_loads_is_kept(chromium: str, sqlite_url: str) -> None:
    """A background refresh whose load began before the user touched the filter must not redraw
    the form when it ends (CI once saw "last 15 minutes" snap back to the applied "custom")."""
    async with live_server(shop_app(Switch()), sqlite_url) as (base, rt):
        assert rt.store is not None
        await _seed(base, rt.store)
        errors: list[str] = []
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = await _sign_in(browser, base, errors)
                await _nav(page, "Events")
                await expect(page.locator("table.grid tbody tr")).to_have_count(4)
                held, release = asyncio.Event(), asyncio.Event()

                async def hold(route: Route) -> None:
                    held.set()
                    await release.wait()
                    await route.continue_()

                # the next list load is the 5 s background refresh: hold it in flight
                await page.route(re.compile(r"/api/events\?"), hold)
                await asyncio.wait_for(held.wait(), 15)
                await page.get_by_label("Time range").select_option("1h")
                async with page.expect_response(re.compile(r"/api/events\?")):
                    release.set()
                await page.evaluate("() => new Promise((done) => setTimeout(done, 300))")
                await expect(page.get_by_label("Time range")).to_have_value("1h")
                await page.unroute(re.compile(r"/api/events\?"))
                await page.get_by_role("button", name="Filter").click()
                await expect(page).to_have_url(re.compile(r"#/events\?range=1h$"))
            finally:
                await browser.close()
        assert errors == []


async def _has(store: store_mod.Store, status: str, n: int) -> bool:
    return await _count(store, status=status) == n


PAGES = ["", "events", "executions", "dead", "schedules", "sources", "search?q=order"]
HOURS_AGO = [1, 2, 2, 3, 5, 5, 5, 8, 9, 12, 13, 13, 16, 18, 20, 21, 22]


async def _history(store: store_mod.Store) -> None:
    """Deliveries spread over the last day (stored directly, as if received then)."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # the current bucket's start
    batch = []
    for i, hours in enumerate(HOURS_AGO):
        body = json.dumps({"n": i}).encode()
        batch.append(
            records.NewEvent(
                id=uuid.uuid4(),
                source="billing",
                idempotency_key=f"past-{i}",
                type="invoice.paid",
                status="accepted",
                payload=body.decode(),
                body=body,
                headers={},
                errors=None,
                correlation_id=f"past-{i}",
                received_at=hour - timedelta(hours=hours) + timedelta(minutes=30),
            )
        )
    await store.ingest(batch)


async def test_dark_mode_and_a_390px_phone_screen(chromium: str, sqlite_url: str, screenshots: Path) -> None:
    async with live_server(shop_app(Switch()), sqlite_url) as (base, rt):
        assert rt.store is not None
        await _seed(base, rt.store)
        await _history(rt.store)
        execution = (await rt.store.list_executions(store_mod.Filters(handler="fulfil", limit=1)))[0]
        errors: list[str] = []
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                light = await _sign_in(browser, base, errors, viewport={"width": 1360, "height": 900})
                dark = await _sign_in(
                    browser, base, errors, viewport={"width": 1360, "height": 900}, color_scheme="dark"
                )
                assert await _luminance(light, "body") > 0.8
                assert await _luminance(dark, "body") < 0.1
                assert await _luminance(dark, ".panel") < 0.15
                text = await dark.evaluate("getComputedStyle(document.querySelector('.card-value')).color")
                assert _rgb_luminance(text) > 0.7, text
                await dark.locator("svg.chart g.bucket").first.wait_for()
                # each past delivery sits in the bar of its hour, counted back from the current one
                heights = [
                    float(await bar.get_attribute("height") or 0)
                    for bar in await dark.locator("svg.chart g.bucket rect.deliveries").all()
                ]
                assert len(heights) == 24
                busy = {23 - i for i, height in enumerate(heights) if height > 0}
                assert busy == {0} | {h for h in HOURS_AGO if h < 24}, busy
                await _shot(dark, screenshots / "overview-dark.png")
                await dark.goto(f"{base}/dashboard#/executions/{execution.id}")
                await dark.get_by_role("heading", name="Logs").wait_for()
                await _shot(dark, screenshots / "execution-dark.png")

                phone = await _sign_in(
                    browser,
                    base,
                    errors,
                    viewport={"width": 390, "height": 844},
                    is_mobile=True,
                    has_touch=True,
                )
                for route in [*PAGES, f"executions/{execution.id}"]:
                    await phone.goto(f"{base}/dashboard#/{route}")
                    await phone.locator("main h1").first.wait_for()
                    await phone.locator("main .loading").wait_for(state="detached")
                    width = await phone.evaluate("document.documentElement.scrollWidth")
                    assert width <= 390, (route, width)
                    for link in await phone.locator("header nav a").all():
                        box = await link.bounding_box()
                        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (
                            route,
                            box,
                        )
                        assert await link.is_visible()
                    if route == "":
                        await _shot(phone, screenshots / "phone-overview.png")
                    elif route.startswith("executions/"):
                        await _shot(phone, screenshots / "phone-execution.png")
                # the navigation works from the phone, too
                await _nav(phone, "Dead letters")
            finally:
                await browser.close()
        assert errors == []


async def _luminance(page: Page, selector: str) -> float:
    color = await page.evaluate(f"getComputedStyle(document.querySelector({selector!r})).backgroundColor")
    return _rgb_luminance(color)


def _rgb_luminance(color: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", color)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255
