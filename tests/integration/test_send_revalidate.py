"""``solo-os send`` against a real HTTP server, and ``solo-os events revalidate`` on SQLite
and PostgreSQL: the CLI as users run it (typer's runner), the store looked into directly.
"""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from solo_os import _loader
from solo_os import store as store_mod
from solo_os.cli import cli
from tests import helpers

ENV = {
    "STRIPE_WEBHOOK_SECRET": "whsec_send_test_secret",
    "GITHUB_WEBHOOK_SECRET": "send-github",
    "SHOPIFY_WEBHOOK_SECRET": "send-shopify",
    "SLACK_SIGNING_SECRET": "send-slack",
    "SVIX_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "BILLING_WEBHOOK_SECRET": helpers.SECRET,
}

APP = """
from typing import Any
from pydantic import BaseModel, PositiveInt
from solo_os import App, sources

class Invoice(BaseModel):
    id: str
    amount_paid: {amount}

class Issue(BaseModel):
    action: str
    issue: dict[str, Any]

app = App(service="send-test")
app.source("stripe", sources.stripe(payload="data.object"))
app.source("github", sources.github())
app.source("shopify", sources.shopify())
app.source("slack", sources.slack())
app.source("svix", sources.standard_webhooks(secret_env="SVIX_WEBHOOK_SECRET"))
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
app.source("open", sources.hmac(secret_env=None, verify=False))

@app.on("stripe", "invoice.paid", schema=Invoice)
def paid(event: Invoice, ctx: Any) -> None: ...

@app.on("stripe", "invoice.paid", name="paid_audit")
def paid_audit(event: Any, ctx: Any) -> None: ...

@app.on("github", "issues.opened", schema=Issue)
def opened(event: Issue, ctx: Any) -> None: ...

@app.on("slack", "app_mention")
def mention(event: Any, ctx: Any) -> None: ...
"""


def write_app(folder: Path, amount: str = "PositiveInt", name: str = "app.py") -> str:
    path = folder / name
    path.write_text(textwrap.dedent(APP).replace("{amount}", amount), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """``solo-os run`` as users start it, on a free port: (url, app path, database url)."""
    folder = tmp_path_factory.mktemp("send")
    app_path = write_app(folder)
    database_url = f"sqlite:///{folder / 'solo_os.db'}"
    env = {**ENV, "DATABASE_URL": database_url, "LOG_LEVEL": "warn"}
    with helpers.solo_os_run(folder, app_path, env) as url:
        yield url, app_path, database_url


def send(app_path: str, *args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, ["send", *args, "--app", app_path], env={**ENV, **(env or {})})


def run(coro_fn: Any, database_url: str) -> Any:
    async def main() -> Any:
        store = store_mod.connect(database_url)
        try:
            return await coro_fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


# --- send --------------------------------------------------------------------------------------

SENDS = [
    ("stripe", "invoice.paid", {"id": "in_1", "amount_paid": 4900}, 2),
    ("github", "issues.opened", {"issue": {"number": 7}}, 1),
    ("shopify", "orders/create", {"id": 820982911946154508}, 0),
    ("slack", "app_mention", {"text": "<@U1> hello"}, 1),
    ("svix", "user.created", {"id": "user_1"}, 0),
    ("billing", "invoice.paid", helpers.invoice(), 0),
    ("open", "anything.at_all", {"x": 1}, 0),  # verify=False: sent unsigned, still accepted
]


def test_send_delivers_a_signed_event_per_provider_and_repeats_are_duplicates(
    served: tuple[str, str, str],
) -> None:
    url, app_path, database_url = served
    ids = []
    for name, event_type, data, executions in SENDS:
        result = send(app_path, name, event_type, "--data", json.dumps(data),
                      "--url", url, "--repeat", "3", "--json")
        assert result.exit_code == 0, (name, result.output)
        answers = json.loads(result.stdout)
        assert [a["status_code"] for a in answers] == [200, 200, 200]
        first = answers[0]["response"]
        assert first["status"] == "accepted", (name, first)
        assert first["executions"] == executions, name
        assert [a["response"] for a in answers[1:]] == [
            {"status": "duplicate", "event_id": first["event_id"]}
        ] * 2
        ids.append(first["event_id"])
    stored = [
        e for e in run(lambda s: s.list_events(store_mod.Filters(limit=0)), database_url)
        if str(e.id) in ids
    ]
    assert sorted((e.source, e.type) for e in stored) == sorted((n, t) for n, t, _, _ in SENDS)
    assert all(e.status == "accepted" for e in stored)
    github = next(e for e in stored if e.source == "github")
    assert github.type == "issues.opened"  # header "issues" + body action "opened"


def test_send_prints_each_response_and_reads_data_from_a_file(
    served: tuple[str, str, str], tmp_path: Path
) -> None:
    url, app_path, _ = served
    data = tmp_path / "invoice.json"
    data.write_text(json.dumps({"id": "in_2", "amount_paid": 100}), encoding="utf-8")
    result = send(app_path, "stripe", "invoice.paid", "--data", str(data), "--url", url, "--repeat", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("1/2 200 ") and '"accepted"' in lines[0]
    assert lines[1].startswith("2/2 200 ") and '"duplicate"' in lines[1]
    assert "POST " + url + "/webhooks/stripe" in result.stderr
    assert ENV["STRIPE_WEBHOOK_SECRET"] not in result.output


def test_send_exits_1_when_the_delivery_is_not_accepted(served: tuple[str, str, str]) -> None:
    url, app_path, _ = served
    result = send(app_path, "stripe", "invoice.paid", "--data", '{"id": "in_3"}', "--url", url)
    assert result.exit_code == 1
    assert "400" in result.stdout and "invalid_payload" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["nope", "x", "--data", "{}"], {}, "no source 'nope' (it has: billing, github, internal, open"),
        (["stripe", "x", "--data", "{}"], {"STRIPE_WEBHOOK_SECRET": None},
         "STRIPE_WEBHOOK_SECRET: not set"),
        (["stripe", "x", "--data", "{}"], {"STRIPE_WEBHOOK_SECRET": "sk_live_123"}, "is a Stripe API key"),
        (["stripe", "x", "--data", "{oops"], {}, "--data: the text given is not JSON"),
        (["stripe", "x", "--data", "missing.json"], {}, "(and no such file)"),
        (["stripe", "x", "--data", "{}", "--url", "ftp://x"], {}, "is not an http:// or https:// URL"),
        (["github", "issues.opened", "--data", "[1]"], {}, "must be a JSON object"),
    ],
)
def test_send_explains_what_is_wrong(
    tmp_path: Path, args: list[str], env: dict[str, str | None], message: str
) -> None:
    result = send(write_app(tmp_path), *args, env=env)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_send_to_nothing_listening_exits_1(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    result = send(write_app(tmp_path), "stripe", "x", "--data", "{}", "--url", f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert "cannot reach" in result.stderr and "solo-os run" in result.stderr


# --- events revalidate -------------------------------------------------------------------------


def _populate(app_path: str, database_url: str) -> dict[str, str]:
    """Deliver through the real ingress with the strict app; returns key -> status."""

    async def go() -> dict[str, str]:
        application = _loader.load_app(app_path)
        async with helpers.running(application, database_url, roles=("serve",), env=ENV) as h:
            out: dict[str, str] = {}
            stripe = application.sources["stripe"]
            github = application.sources["github"]
            now = time.time()
            cases = [
                (stripe, "stripe", "invoice.paid", {"id": "in_zero", "amount_paid": 0}),  # fixable
                (stripe, "stripe", "invoice.paid", {"id": "in_neg", "amount_paid": -5}),  # fixable
                (stripe, "stripe", "invoice.paid", {"id": "in_none"}),  # still wrong after the fix
                (stripe, "stripe", "invoice.paid", {"id": "in_ok", "amount_paid": 5}),  # accepted
                (github, "github", "issues.opened", {"issue": "not an object"}),  # other type
            ]
            for source, name, event_type, data in cases:
                body, headers = source.build_delivery(event_type, data, now)
                r = await h.client.post(f"/webhooks/{name}", content=body, headers=headers)
                out[data.get("id") or name] = r.json().get("status") or r.json()["error"]
            return out

    return asyncio.run(go())


def revalidate(app_path: str, database_url: str, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["events", "revalidate", "--app", app_path, *args],
        env={**ENV, "DATABASE_URL": database_url},
    )


async def _state(store: store_mod.Store) -> dict[str, Any]:
    events = await store.list_events(store_mod.Filters(limit=0))
    executions = await store.list_executions(store_mod.Filters(limit=0))
    by_event: dict[str, list[str]] = {}
    for x in executions:
        by_event.setdefault(str(x.event_id), []).append(x.handler)
    out = {}
    for e in events:
        found = await store.get_event(e.id)
        assert found is not None
        payload = json.loads(found[1])  # the raw body: a rejected event keeps no parsed payload
        label = ((payload.get("data") or {}).get("object") or {}).get("id") or e.source
        out[label] = (e.status, sorted(by_event.get(str(e.id), [])), e.correlation_id)
    return out


def test_revalidate_accepts_rejected_events_that_now_pass(tmp_path: Path, database_url: str) -> None:
    strict = write_app(tmp_path, "PositiveInt", "strict.py")
    lenient = write_app(tmp_path, "int", "lenient.py")
    sent = _populate(strict, database_url)
    assert sent == {"in_zero": "invalid_payload", "in_neg": "invalid_payload",
                    "in_none": "invalid_payload", "in_ok": "accepted", "github": "invalid_payload"}
    before = run(_state, database_url)

    dry = revalidate(lenient, database_url, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    outcomes = {r["idempotency_key"]: r["outcome"] for r in json.loads(dry.stdout)}
    assert sorted(outcomes.values()) == ["still_rejected", "still_rejected", "would_accept", "would_accept"]
    assert run(_state, database_url) == before  # a dry run changes nothing

    only_github = revalidate(lenient, database_url, "--source", "github", "--json")
    assert only_github.exit_code == 0, only_github.output
    assert [r["outcome"] for r in json.loads(only_github.stdout)] == ["still_rejected"]
    none_of_type = revalidate(lenient, database_url, "--type", "charge.failed", "--json")
    assert json.loads(none_of_type.stdout) == []
    future = revalidate(lenient, database_url, "--since", "2999-01-01", "--json")
    assert json.loads(future.stdout) == []

    real = revalidate(lenient, database_url, "--source", "stripe")
    assert real.exit_code == 0, real.output
    assert "3 rejected event(s) examined: 2 accepted, 1 still rejected" in real.stdout
    after = run(_state, database_url)
    for fixed in ("in_zero", "in_neg"):
        status, handlers, correlation = after[fixed]
        assert status == "accepted"
        assert handlers == ["paid", "paid_audit"]  # its executions, created with the upgrade
        assert correlation == before[fixed][2]  # the delivery keeps its correlation id
    assert after["in_none"][0] == "rejected"
    assert after["in_ok"] == before["in_ok"]
    assert after["github"][0] == "rejected"

    again = revalidate(lenient, database_url, "--source", "stripe", "--json")
    assert [r["outcome"] for r in json.loads(again.stdout)] == ["still_rejected"]


def test_revalidate_explains_a_missing_app(database_url: str) -> None:
    result = CliRunner().invoke(cli, ["events", "revalidate"], env={"DATABASE_URL": database_url,
                                                                  "SOLO_OS_APP": ""})
    assert result.exit_code == 2
    assert "APP" in result.stderr
