"""Form-encoded deliveries (SPEC section 2) through the real ingress and worker, on SQLite and
PostgreSQL: Slack slash commands and interactivity, Twilio form posts and GitHub's form content
type are verified over the raw bytes, then decoded (a ``payload`` field holding JSON is that
JSON, otherwise the fields as strings) and handed to the schema and the handler. Slack is
answered well within its 3-second window, after the durable commit. A form that is not UTF-8 or
holds what the database cannot store is a 400, stored as rejected.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import httpx
from pydantic import BaseModel

from solo_os import App, Context, sources
from solo_os import store as store_mod
from solo_os.admin import revalidate
from tests import helpers

FORM = "application/x-www-form-urlencoded"
TWILIO_URL = "https://sms.example.com/webhooks/twilio"
ENV = {
    "SLACK_SIGNING_SECRET": "form-slack-signing-secret",
    "TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef",
    "GITHUB_WEBHOOK_SECRET": "form-github-secret",
}


class SlashCommand(BaseModel):
    command: str
    text: str
    user_id: str
    response_url: str


class BlockActions(BaseModel):
    type: str
    actions: list[dict[str, Any]]
    user: dict[str, Any]


class IncomingSms(BaseModel):
    MessageSid: str
    From: str
    Body: str


class Issue(BaseModel):
    action: str
    issue: dict[str, Any]


def form_app(calls: list[tuple[str, Any]]) -> App:
    app = App(service="forms")
    app.source("slack", sources.slack())
    app.source("twilio", sources.twilio(url=TWILIO_URL))
    app.source("github", sources.github())

    @app.on("slack", "/deploy", schema=SlashCommand)
    def deploy(event: SlashCommand, ctx: Context) -> None:
        calls.append(("deploy", event.text))

    @app.on("slack", "block_actions", schema=BlockActions)
    def clicked(event: BlockActions, ctx: Context) -> None:
        calls.append(("clicked", event.actions[0]["action_id"]))

    @app.on("twilio", "message", schema=IncomingSms)
    def sms(event: IncomingSms, ctx: Context) -> None:
        calls.append(("sms", event.Body))

    @app.on("twilio", "delivered")
    def delivered(event: dict[str, Any], ctx: Context) -> None:
        calls.append(("delivered", event))

    @app.on("github", "issues.opened", schema=Issue)
    def opened(event: Issue, ctx: Context) -> None:
        calls.append(("opened", event.issue["number"]))

    return app


async def post(h: helpers.Harness, name: str, body: bytes, headers: Any) -> httpx.Response:
    return await h.client.post(f"/webhooks/{name}", content=body, headers=headers)


async def events(h: helpers.Harness) -> list[Any]:
    return await h.store.list_events(store_mod.Filters(limit=0))


async def ran(calls: list[tuple[str, Any]], expected: list[tuple[str, Any]]) -> None:
    async def check() -> bool:
        return sorted(calls, key=repr) == sorted(expected, key=repr)

    await helpers.eventually(check)


async def test_slack_slash_command_and_interactivity(database_url: str) -> None:
    calls: list[tuple[str, Any]] = []
    async with helpers.running(form_app(calls), database_url, env=ENV) as h:
        slack = h.runtime.app.sources["slack"]
        body, headers = slack.build_delivery("/deploy", {"text": "prod now"}, time.time())
        assert headers["content-type"] == FORM
        fields = dict(urllib.parse.parse_qsl(body.decode()))
        assert fields["command"] == "/deploy"
        started = time.perf_counter()
        r = await post(h, "slack", body, headers)
        elapsed = time.perf_counter() - started
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted" and r.json()["executions"] == 1
        assert elapsed < 1.0, elapsed  # Slack gives up after 3 s; the answer follows the commit
        retry = {**headers, **slack.sign(body, time.time() + 1)}
        assert (await post(h, "slack", body, retry)).json()["status"] == "duplicate"

        click = {"actions": [{"action_id": "approve", "value": "42"}]}
        body2, headers2 = slack.build_delivery("block_actions", click, time.time())
        [(name, raw)] = urllib.parse.parse_qsl(body2.decode())
        assert name == "payload" and json.loads(raw)["type"] == "block_actions"
        started = time.perf_counter()
        r2 = await post(h, "slack", body2, headers2)
        assert time.perf_counter() - started < 1.0
        assert r2.json()["status"] == "accepted", r2.text

        # a form that fails its schema is 400 and kept as rejected
        bad, bad_headers = slack.build_delivery("block_actions", {"actions": "no"}, time.time())
        r3 = await post(h, "slack", bad, bad_headers)
        assert r3.status_code == 400
        assert r3.json()["details"][0]["loc"] == ["actions"]

        await ran(calls, [("deploy", "prod now"), ("clicked", "approve")])
        stored_events = await events(h)
        assert sorted((e.type, e.status) for e in stored_events) == [
            ("/deploy", "accepted"), ("block_actions", "accepted"), ("block_actions", "rejected")
        ]
        by_type = {e.type: e for e in stored_events if e.status == "accepted"}
        assert by_type["/deploy"].idempotency_key == fields["trigger_id"]
        assert by_type["block_actions"].idempotency_key == json.loads(raw)["trigger_id"]
        stored = await h.store.get_event(by_type["/deploy"].id)
        assert stored is not None
        assert stored[1] == body  # the raw bytes, as signed
        assert stored[0].payload["text"] == "prod now"  # the decoded form


async def test_twilio_form_posts(database_url: str) -> None:
    calls: list[tuple[str, Any]] = []
    async with helpers.running(form_app(calls), database_url, env=ENV) as h:
        twilio = h.runtime.app.sources["twilio"]
        sms = {"From": "+15550001111", "To": "+15550002222", "Body": "Stop & go +1 ünïcode",
               "NumMedia": "0"}
        body, headers = twilio.build_delivery("message", sms, time.time())
        assert headers["content-type"] == FORM
        r = await post(h, "twilio", body, headers)
        assert r.json()["status"] == "accepted", r.text
        assert (await post(h, "twilio", body, headers)).json()["status"] == "duplicate"

        # a status callback without Twilio's idempotency header: keyed by MessageSid + status
        status = {"MessageSid": "SM" + "a" * 32, "AccountSid": "AC" + "b" * 32}
        body2, headers2 = twilio.build_delivery("delivered", status, time.time())
        del headers2["i-twilio-idempotency-token"]
        r2 = await post(h, "twilio", body2, headers2)
        assert r2.json()["status"] == "accepted", r2.text
        tampered = body2.replace(b"delivered", b"failed")
        assert (await post(h, "twilio", tampered, headers2)).status_code == 401

        await ran(calls, [("sms", sms["Body"]), ("delivered", {**status, "MessageStatus": "delivered"})])
        keys = {e.type: e.idempotency_key for e in await events(h)}
        assert keys["message"] == headers["i-twilio-idempotency-token"]
        assert keys["delivered"] == f"SM{'a' * 32}:delivered"


async def test_github_form_content_type(database_url: str) -> None:
    calls: list[tuple[str, Any]] = []
    async with helpers.running(form_app(calls), database_url, env=ENV) as h:
        github = h.runtime.app.sources["github"]
        document = {"action": "opened", "issue": {"number": 7, "title": "a & b = c"}}
        body = urllib.parse.urlencode({"payload": json.dumps(document)}).encode()
        headers = {
            "content-type": FORM,
            "x-github-event": "issues",
            "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            **github.sign(body, time.time()),
        }
        r = await post(h, "github", body, headers)
        assert r.json()["status"] == "accepted", r.text
        assert (await post(h, "github", body + b"&x=1", headers)).status_code == 401
        await ran(calls, [("opened", 7)])
        [event] = await events(h)
        assert event.type == "issues.opened"
        assert event.idempotency_key == headers["x-github-delivery"]


async def test_forms_that_cannot_be_decoded_or_stored_are_rejected(sqlite_url: str) -> None:
    async with helpers.running(form_app([]), sqlite_url, env=ENV, roles=("serve",)) as h:
        slack = h.runtime.app.sources["slack"]
        for body in (b"command=%2Fdeploy&text=%FF%FE", b"command=%2Fdeploy&text=a%00b", b"\xff=1"):
            headers = {"content-type": FORM, **slack.sign(body, time.time())}
            r = await post(h, "slack", body, headers)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"] == "invalid_payload"
        rejected = await events(h)
        assert [e.status for e in rejected] == ["rejected"] * 3


async def test_a_rejected_form_is_revalidated_from_its_stored_body_and_headers(
    database_url: str,
) -> None:
    """``events revalidate`` (and the dashboard's) rebuild an event from its stored raw body and
    headers: a form is decoded again, the same way, and its payload stored as the document."""

    class Strict(BaseModel):
        command: str
        environment: str  # the slash command's form has no such field: rejected

    strict = App(service="forms")
    strict.source("slack", sources.slack())
    strict.on("slack", "/deploy", schema=Strict, name="deploy")(lambda event, ctx: None)
    async with helpers.running(strict, database_url, env=ENV, roles=("serve",)) as h:
        slack = h.runtime.app.sources["slack"]
        body, headers = slack.build_delivery("/deploy", {"text": "prod"}, time.time())
        r = await post(h, "slack", body, headers)
        assert r.status_code == 400
        [event] = await events(h)
        found = await h.store.get_event(event.id)
        assert found is not None and found[1] == body

        lenient = form_app([])  # the fixed schema: SlashCommand
        [verdict] = await revalidate.revalidate(
            lenient, h.store, [(found[0], found[1])], now=store_mod.utcnow()
        )
        assert (verdict.outcome, verdict.executions) == ("accepted", 1), verdict
        again = await h.store.get_event(event.id)
        assert again is not None
        assert again[0].status == "accepted"
        assert again[0].payload["command"] == "/deploy" and again[0].payload["text"] == "prod"
