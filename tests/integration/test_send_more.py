"""``solo-os send`` and ``solo-os sources`` for the further providers, and the pytest plugin's
client for all of them.

``send`` runs as users run it (typer's runner) against ``solo-os run`` on a real port: a few of
the new sources end to end (form-encoded, public-key, URL-signing and body-signature schemes).
Every new source is signed through the library API that ``send`` calls
(``Source.build_delivery``) in test_providers_more.py; here the test kit's client signs one of
each with the secrets it generates, and the app accepts each once.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from solo_os import App, sources, testing
from solo_os.cli import cli
from solo_os.sources import _keys
from tests import helpers

DISCORD_KEY = _keys.new_ed25519_test_key()
ENV = {
    "TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef",
    "DISCORD_PUBLIC_KEY": DISCORD_KEY,
    "HUBSPOT_CLIENT_SECRET": "hubspot-send-secret",
    "HUBSPOT_PUBLIC_URL": "https://crm.example.com/webhooks/hubspot",
    "MAILGUN_WEBHOOK_SIGNING_KEY": "mailgun-send-key",
    "POSTMARK_WEBHOOK_CREDENTIALS": "hooks:send-password-1",
    "PADDLE_WEBHOOK_SECRET": "pdl_ntfset_send_secret",
    "SLACK_SIGNING_SECRET": "send-slack-signing",
}

APP = """
from typing import Any
from solo_os import App, sources

app = App(service="send-more")
app.source("twilio", sources.twilio(url="https://sms.example.com/webhooks/twilio"))
app.source("discord", sources.discord())
app.source("hubspot", sources.hubspot(public_url_env="HUBSPOT_PUBLIC_URL"))
app.source("mailgun", sources.mailgun())
app.source("postmark", sources.postmark())
app.source("paddle", sources.paddle(payload="data"))
app.source("slack", sources.slack())

@app.on("twilio", "*")
def sms(event: Any, ctx: Any) -> None: ...

@app.on("slack", "/deploy")
def deploy(event: Any, ctx: Any) -> None: ...
"""

SENDS = [
    ("twilio", "message", {"From": "+15550001111", "Body": "hi & bye"}, 1),
    ("discord", "APPLICATION_COMMAND", {"name": "ping"}, 0),
    ("hubspot", "contact.creation", {"objectId": 5}, 0),
    ("mailgun", "delivered", {"recipient": "a@example.com"}, 0),
    ("postmark", "Bounce", {"ID": 99}, 0),
    ("paddle", "transaction.completed", {"id": "txn_1"}, 0),
    ("slack", "/deploy", {"text": "prod"}, 1),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``solo-os run`` as users start it, on a free port: (url, app path)."""
    folder = tmp_path_factory.mktemp("send-more")
    app_path = folder / "app.py"
    app_path.write_text(textwrap.dedent(APP), encoding="utf-8")
    env = {**ENV, "DATABASE_URL": f"sqlite:///{folder / 'solo_os.db'}", "LOG_LEVEL": "warn"}
    with helpers.solo_os_run(folder, str(app_path), env) as url:
        yield url, str(app_path)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env={**ENV, **(env or {})})


def test_send_signs_the_new_sources_and_repeats_are_duplicates(served: tuple[str, str]) -> None:
    url, app_path = served
    for name, event_type, data, executions in SENDS:
        result = invoke("send", name, event_type, "--data", json.dumps(data), "--url", url,
                        "--repeat", "2", "--json", "--app", app_path)
        assert result.exit_code == 0, (name, result.output)
        first, second = json.loads(result.stdout)
        assert (first["status_code"], second["status_code"]) == (200, 200), (name, first)
        if name == "discord":  # answered with Discord's deferred interaction response
            assert first["response"] == second["response"] == {"type": 5}
            continue
        assert first["response"]["status"] == "accepted", (name, first)
        assert first["response"]["executions"] == executions, name
        assert second["response"] == {"status": "duplicate",
                                      "event_id": first["response"]["event_id"]}, name


def test_send_refuses_to_sign_with_a_public_key(served: tuple[str, str]) -> None:
    url, app_path = served
    public = _keys.ed25519_public_hex(DISCORD_KEY)
    result = invoke("send", "discord", "PING", "--data", "{}", "--url", url, "--app", app_path,
                    env={"DISCORD_PUBLIC_KEY": public})
    assert result.exit_code == 2, result.output
    assert "--test-secret" in result.output
    assert public not in result.output


def test_sources_lists_routes_and_variables_never_values(tmp_path: Path) -> None:
    app_path = tmp_path / "app.py"
    app_path.write_text(textwrap.dedent(APP), encoding="utf-8")
    env = {**ENV, "POSTMARK_WEBHOOK_CREDENTIALS": "no-colon", "MAILGUN_WEBHOOK_SIGNING_KEY": ""}
    result = invoke("sources", str(app_path), "--json", env=env)
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["twilio"]["route"] == "POST /webhooks/twilio"
    assert rows["hubspot"]["variables"] == [
        {"name": "HUBSPOT_CLIENT_SECRET", "holds": "secret", "status": "set"},
        {"name": "HUBSPOT_PUBLIC_URL", "holds": "public URL", "status": "set"},
    ]
    assert rows["mailgun"]["variables"][0]["status"] == "not set"
    assert rows["postmark"]["variables"][0]["status"].startswith("invalid: secret #1 is not user:password")
    assert rows["discord"]["kind"] == "discord"
    for secret in (ENV["TWILIO_AUTH_TOKEN"], DISCORD_KEY, "no-colon", ENV["PADDLE_WEBHOOK_SECRET"]):
        assert secret not in result.output
    table = invoke("sources", "--app", str(app_path), env=env)
    assert table.exit_code == 0, table.output
    assert "TWILIO_AUTH_TOKEN (secret): set" in table.stdout
    assert "POST /webhooks/slack" in table.stdout


def test_sources_prints_a_test_secret_that_the_source_accepts(tmp_path: Path) -> None:
    app_path = tmp_path / "app.py"
    app_path.write_text(textwrap.dedent(APP), encoding="utf-8")
    result = invoke("sources", str(app_path), "--test-secret", "discord", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["secret"].startswith("private:")
    assert answer["public_key"] == _keys.ed25519_public_hex(answer["secret"])
    assert sources.discord().check_secrets((answer["secret"],)) is None
    postmark = invoke("sources", str(app_path), "--test-secret", "postmark")
    assert sources.postmark().check_secrets((postmark.stdout.strip(),)) is None


# --- the pytest plugin's client signs for every new source ------------------------------------

KIT: dict[str, tuple[Any, str, Any]] = {
    "paddle": (sources.paddle(), "transaction.completed", {"id": "txn_1"}),
    "lemonsqueezy": (sources.lemonsqueezy(), "order_created", {"id": "1"}),
    "gitlab": (sources.gitlab(), "Push Hook", {"object_kind": "push"}),
    "discord": (sources.discord(), "APPLICATION_COMMAND", {"name": "ping"}),
    "twilio": (sources.twilio(url="https://sms.example.com/t"), "message", {"Body": "hi"}),
    "postmark": (sources.postmark(), "Delivery", {"Recipient": "a@example.com"}),
    "sendgrid": (sources.sendgrid(), "delivered", {"email": "a@example.com"}),
    "mailgun": (sources.mailgun(), "delivered", {"recipient": "a@example.com"}),
    "resend": (sources.resend(), "email.sent", {"email_id": "e1"}),
    "clerk": (sources.clerk(), "user.created", {"id": "user_1"}),
    "intercom": (sources.intercom(), "contact.created", {"id": "c1"}),
    "linear": (sources.linear(), "Issue.create", {"id": "i1"}),
    "square": (sources.square(url="https://pay.example.com/s"), "payment.created", {"id": "p1"}),
    "calendly": (sources.calendly(), "invitee.created", {"email": "a@example.com"}),
    "typeform": (sources.typeform(), "form_response", {"form_id": "f1"}),
    "hubspot": (sources.hubspot(public_url_env="KIT_HUBSPOT_URL"), "contact.creation", {"objectId": 1}),
}  # KIT_HUBSPOT_URL is not set: the kit fills in its own URL


async def test_the_plugin_client_signs_every_new_source() -> None:
    app = App(service="kit-more")
    for name, (source, _, _) in KIT.items():
        app.source(name, source)
        app.on(name, "*", name=f"on_{name}")(lambda event, ctx: None)
    async with testing.run(app) as solo:
        for name, (_, event_type, data) in KIT.items():
            posted = await solo.client.send(name, event_type, data)
            assert posted.status == "accepted", (name, posted)
            again = await solo.client.post(posted.delivery)  # re-signed now, like a retry
            assert again.status == "duplicate", (name, again)
            [event] = await solo.events(source=name)
            assert event.type == event_type, name
            assert event.idempotency_key == posted.delivery.idempotency_key, name
            assert posted.delivery.document is not None
