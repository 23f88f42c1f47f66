"""An app with one source of every kind, handlers that record what they saw, and a cron job."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, PositiveInt

from solo_os import App, Context, NonRetryable, Retry, sources


class Invoice(BaseModel):
    id: str
    amount_cents: PositiveInt


@dataclass
class Effects:
    seen: list[tuple[str, Any]] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)  # handler -> attempts to fail
    fired: list[datetime] = field(default_factory=list)
    dead: list[Any] = field(default_factory=list)
    http_answers: list[int] = field(default_factory=list)

    def by(self, handler: str) -> list[Any]:
        return [what for name, what in self.seen if name == handler]


def make_app(effects: Effects) -> App:
    app = App(service="kit")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
    app.source("stripe", sources.stripe(secret_env="STRIPE_WEBHOOK_SECRET", payload="data.object"))
    app.source("github", sources.github(secret_env="GITHUB_WEBHOOK_SECRET"))
    app.source("shopify", sources.shopify(secret_env="SHOPIFY_WEBHOOK_SECRET"))
    app.source("slack", sources.slack(secret_env="SLACK_SIGNING_SECRET", payload="event"))
    app.source("svix", sources.standard_webhooks(secret_env="SVIX_WEBHOOK_SECRET", payload="data"))

    def maybe_fail(ctx: Context) -> None:
        if effects.failures[ctx.handler] > 0:
            effects.failures[ctx.handler] -= 1
            raise RuntimeError(f"{ctx.handler} failed on attempt {ctx.attempt}")

    @app.on("billing", "invoice.paid", schema=Invoice, retry=Retry(max_attempts=4))
    async def fulfil(event: Invoice, ctx: Context) -> None:
        maybe_fail(ctx)
        receipt = await ctx.step("receipt", lambda: {"id": f"rcpt-{event.id}"})
        effects.seen.append(("fulfil", (event.id, receipt["id"], ctx.attempt)))
        ctx.log.info("fulfilled", invoice_id=event.id)

    @app.on("billing", "invoice.voided", retry=Retry(max_attempts=2))
    def void(event: dict[str, Any], ctx: Context) -> None:  # plain def: runs in a thread
        raise NonRetryable(f"cannot void {event.get('id')}")

    @app.on("stripe", "invoice.paid", schema=Invoice)
    async def stripe_paid(event: Invoice, ctx: Context) -> None:
        assert ctx.event is not None
        effects.seen.append(("stripe_paid", (event.id, ctx.event.idempotency_key)))

    @app.on("github", "issues.opened")
    async def issue_opened(event: dict[str, Any], ctx: Context) -> None:
        effects.seen.append(("issue_opened", (event["action"], event["issue"]["number"])))

    @app.on("shopify", "orders/create")
    async def order_created(event: dict[str, Any], ctx: Context) -> None:
        assert ctx.event is not None
        effects.seen.append(("order_created", (event["id"], ctx.event.idempotency_key)))

    @app.on("slack", "app_mention")
    async def mentioned(event: dict[str, Any], ctx: Context) -> None:
        effects.seen.append(("mentioned", event["text"]))

    @app.on("svix", "user.created")
    async def user_created(event: dict[str, Any], ctx: Context) -> None:
        maybe_fail(ctx)
        effects.seen.append(("user_created", event["email"]))

    @app.on("billing", "ping.remote")
    async def ping_remote(event: dict[str, Any], ctx: Context) -> None:
        r = await ctx.http.get("https://api.example.test/ping")
        effects.http_answers.append(r.status_code)

    @app.cron("*/5 * * * *", name="every-five")
    async def every_five(ctx: Context) -> None:
        assert ctx.scheduled_at is not None
        maybe_fail(ctx)
        effects.fired.append(ctx.scheduled_at)

    @app.on_dead
    def record_dead(dead: Any) -> None:
        effects.dead.append(dead)

    return app
