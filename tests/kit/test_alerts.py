"""An app with alert channels runs under the plugin with no channel configured; alerts are
recorded at the test time and never sent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from solo_os import App, Context, NonRetryable, alerts, sources
from solo_os.testing import Solo


@pytest.fixture
def solo_app() -> App:
    app = App(service="alerting")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
    app.alerts(
        alerts.slack(url_env="OPS_SLACK_URL"),
        alerts.webhook(url_env="OPS_HOOK_URL", secret_env="OPS_HOOK_SECRET"),
        alerts.email(to=["ops@example.com"], sender="solo@example.com", host="smtp.example.com",
                     username_env="SMTP_USER", password_env="SMTP_PASSWORD"),
        alerts.apprise(url_env="OPS_APPRISE_URL", name="ops"),
        group_wait=timedelta(seconds=10),
    )

    @app.on("billing", "charge")
    async def charge(event: dict[str, object], ctx: Context) -> None:
        raise NonRetryable("card declined")

    return app


async def test_a_dead_execution_raises_one_alert_gathered_over_the_wait(solo: Solo) -> None:
    assert solo.env["OPS_SLACK_URL"] == "https://alerts.solo-os.test/slack"
    assert solo.env["SMTP_PASSWORD"].startswith("solo-test-")
    assert solo.env["OPS_APPRISE_URL"] == "json://alerts.solo-os.test/ops"  # a URL Apprise accepts
    for n in range(3):
        await solo.client.billing("charge", {"n": n})
    await solo.drain()
    await solo.assert_dead("charge", times=3)
    [alert] = await solo.alerts()
    assert (alert.kind, alert.subject, alert.closed_at) == ("dead", "charge", None)  # still gathering
    solo.clock.advance(seconds=11)
    [alert] = await solo.alerts()
    assert alert.total == 3 and alert.closed_at == solo.clock.now()
    assert set(alert.deliveries) == {"slack", "webhook", "email", "ops"}
    assert set(alert.deliveries.values()) == {"pending"}  # a test sends nothing
