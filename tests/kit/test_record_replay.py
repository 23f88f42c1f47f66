"""``events export`` and ``events replay``: a recorded delivery re-signed for another target."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from solo_os import _loader, errors
from solo_os import store as store_mod
from solo_os.cli import record_replay
from solo_os.sources import DictHeaders
from solo_os.testing import generate_secret, run
from tests.kit import _support

APP = """
from solo_os import App, sources

app = App(service="replay")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
app.source("stripe", sources.stripe(secret_env="STRIPE_WEBHOOK_SECRET", payload="data.object"))
app.source("github", sources.github(secret_env="GITHUB_WEBHOOK_SECRET"))
app.source("svix", sources.standard_webhooks(secret_env="SVIX_WEBHOOK_SECRET"))

@app.on("billing", "invoice.paid")
async def fulfil(event, ctx): pass

@app.on("stripe", "*")
async def stripe_any(event, ctx): pass

@app.on("github", "issues.opened")
async def issue(event, ctx): pass

@app.on("svix", "user.created")
async def user(event, ctx): pass
"""
SECRET_VARS = (
    "BILLING_WEBHOOK_SECRET",
    "STRIPE_WEBHOOK_SECRET",
    "GITHUB_WEBHOOK_SECRET",
    "SVIX_WEBHOOK_SECRET",
)


def secrets(app_path: Path) -> dict[str, str]:
    app = _loader.load_app(str(app_path))
    by_var = {s.secret_env: s for s in app.sources.values()}
    return {var: generate_secret(by_var[var]) for var in SECRET_VARS}


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "replay_app.py"
    path.write_text(APP)
    return path


async def record_production(app_file: Path, db: str, env: dict[str, str]) -> dict[str, bytes]:
    """Deliveries of every kind into ``db``, as production would have stored them."""
    app = _loader.load_app(str(app_file))
    bodies: dict[str, bytes] = {}
    async with run(app, database_url=db, env=env) as solo:
        c = solo.client
        p = await c.send("billing", "invoice.paid", {"id": "inv_1"}, headers={"x-correlation-id": "corr-1"})
        bodies["billing"] = p.delivery.body
        bodies["stripe"] = (await c.stripe("invoice.paid", {"id": "in_1"})).delivery.body
        bodies["github"] = (await c.github("issues.opened", {"issue": {"number": 3}})).delivery.body
        bodies["svix"] = (await c.send("svix", "user.created", {"email": "a@example.com"})).delivery.body
        # A Svix sender uses its own header names.
        d = c.build("svix", "user.created", {"email": "b@example.com"})
        svix = {("svix-" + k[8:] if k.startswith("webhook-") else k): v for k, v in d.headers.items()}
        assert (await c.raw("svix", d.body, svix)).status_code == 200
        bodies["svix-named"] = d.body
        # Not UTF-8, so not JSON: stored as rejected, exported as base64.
        raw = b"\xff\xfe binary \x00"
        signed = solo.app.sources["billing"].sign(raw, solo.clock.time())
        r = await c.raw(
            "billing", raw, {**signed, "x-event-type": "invoice.paid", "x-idempotency-key": "bin-1"}
        )
        assert r.status_code == 400
        bodies["binary"] = raw
        await solo.drain()
    return bodies


async def test_export_keeps_bodies_and_headers_and_never_a_secret(app_file: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/prod.db"
    prod = secrets(app_file)
    bodies = await record_production(app_file, db, prod)
    r = _support.cli("events", "export", env=_support.clean_env(DATABASE_URL=db))
    assert r.returncode == 0, r.stderr
    assert "exported 6 event(s)" in r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 6
    for line in lines:
        assert line["format"] == "solo-os.event/1"
        assert set(line) >= {
            "source",
            "type",
            "idempotency_key",
            "received_at",
            "correlation_id",
            "headers",
            "body",
        }
        assert not any("signature" in h for h in line["headers"])
        assert "host" not in line["headers"] and "content-length" not in line["headers"]
    for value in prod.values():
        assert value not in r.stdout
    assert [line["received_at"] for line in lines] == sorted(line["received_at"] for line in lines)
    billing = next(line for line in lines if line["source"] == "billing" and line["status"] == "accepted")
    assert billing["body"].encode() == bodies["billing"] and billing["correlation_id"] == "corr-1"
    assert billing["headers"]["x-event-type"] == "invoice.paid"
    [binary] = [line for line in lines if line["body_encoding"] == "base64"]
    assert base64.b64decode(binary["body"]) == bodies["binary"]
    assert binary["idempotency_key"] == "bin-1"  # not JSON, but its header still keys it
    assert binary["status"] == "rejected"

    out = tmp_path / "stripe.jsonl"
    env = _support.clean_env(DATABASE_URL=db)
    r = _support.cli("events", "export", "--source", "stripe", "-o", str(out), env=env)
    assert r.returncode == 0 and r.stdout == ""
    [stripe] = [json.loads(line) for line in out.read_text().splitlines()]
    assert stripe["idempotency_key"].startswith("evt_") and stripe["type"] == "invoice.paid"
    newest = _support.cli("events", "export", "--limit", "1", env=env)
    assert [json.loads(x)["idempotency_key"] for x in newest.stdout.splitlines()] == [
        binary["idempotency_key"]
    ]
    accepted = _support.cli("events", "export", "--status", "accepted", env=env)
    assert len(accepted.stdout.splitlines()) == 5


async def test_replay_re_signs_for_the_target_keeps_keys_and_repeats_as_duplicates(
    app_file: Path, tmp_path: Path
) -> None:
    prod_db, target_db = f"sqlite:///{tmp_path}/prod.db", f"sqlite:///{tmp_path}/target.db"
    await record_production(app_file, prod_db, secrets(app_file))
    export = tmp_path / "events.jsonl"
    r = _support.cli(
        "events",
        "export",
        "--status",
        "accepted",
        "-o",
        str(export),
        env=_support.clean_env(DATABASE_URL=prod_db),
    )
    assert r.returncode == 0, r.stderr
    recorded = [json.loads(line) for line in export.read_text().splitlines()]

    target = secrets(app_file)  # the target's own secrets: nothing from production
    env = _support.clean_env(DATABASE_URL=target_db, **target)
    port = _support.free_port()
    with _support.server(["run", str(app_file)], env, port, tmp_path / "server.log", cwd=tmp_path):
        url = f"http://127.0.0.1:{port}"
        r = _support.cli(
            "events",
            "replay",
            str(export),
            "--to",
            url,
            "--app",
            str(app_file),
            "--repeat",
            "3",
            "--json",
            env=env,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        results = json.loads(r.stdout)
        assert len(results) == 3 * len(recorded) == 15
        assert [x["outcome"] for x in results if x["attempt"] == 1] == ["accepted"] * 5
        assert [x["outcome"] for x in results if x["attempt"] > 1] == ["duplicate"] * 10
        assert all(x["key_kept"] for x in results)

        table = _support.cli("events", "replay", str(export), "--to", url, "--app", str(app_file), env=env)
        assert table.returncode == 0 and "duplicate" in table.stdout and "5" in table.stdout

        wrong = _support.clean_env(DATABASE_URL=target_db, **secrets(app_file))
        refused = _support.cli(
            "events", "replay", str(export), "--to", url, "--app", str(app_file), env=wrong
        )
        assert refused.returncode == 1
        assert "invalid_signature" in refused.stdout and "line 1" in refused.stderr

    store = store_mod.connect(target_db)
    try:
        events = await store.list_events(store_mod.Filters(limit=0))
        xs = await store.list_executions(store_mod.Filters(limit=0))
    finally:
        await store.close()
    assert sorted(e.idempotency_key for e in events) == sorted(x["idempotency_key"] for x in recorded)
    assert len(xs) == 5 and {x.status for x in xs} <= {"succeeded", "pending", "running"}


def test_replay_refuses_bad_files_and_unknown_sources_readably(app_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"source": "billing", "body": "{}", "idempotency_key": "k"}\n'
        "not json\n"
        '{"source": 1, "body": "{}", "idempotency_key": "k"}\n'
        '{"source": "billing", "body": "%%%", "body_encoding": "base64", "idempotency_key": "k"}\n'
    )
    env = _support.clean_env(**secrets(app_file))
    r = _support.cli(
        "events", "replay", str(bad), "--to", "http://127.0.0.1:9", "--app", str(app_file), env=env
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "line 2: not JSON" in r.stderr and "line 3: 'source' must be a string" in r.stderr
    assert "line 4: body is not base64" in r.stderr
    other = tmp_path / "other.jsonl"
    other.write_text('{"source": "paddle", "body": "{}", "idempotency_key": "k"}\n')
    r = _support.cli(
        "events", "replay", str(other), "--to", "http://127.0.0.1:9", "--app", str(app_file), env=env
    )
    assert r.returncode == 2 and "source 'paddle'; the app has none" in r.stderr
    r = _support.cli("events", "replay", str(other), "--to", "ftp://x", "--app", str(app_file), env=env)
    assert r.returncode == 2
    good = tmp_path / "good.jsonl"
    good.write_text('{"source": "billing", "body": "{}", "idempotency_key": "k", "type": "invoice.paid"}\n')
    r = _support.cli(
        "events",
        "replay",
        str(good),
        "--to",
        f"http://127.0.0.1:{_support.free_port()}",
        "--app",
        str(app_file),
        env=env,
    )
    assert r.returncode == 1 and "unreachable" in r.stdout


def test_exported_headers_drop_secrets_and_transport() -> None:
    kept = record_replay.exportable_headers(
        {
            "X-Event-Type": "a",
            "x-signature": "s",
            "Authorization": "t",
            "x-api-key": "k",
            "stripe-signature": "s",
            "x-shopify-access-token": "t",
            "host": "h",
            "content-length": "2",
            "x-forwarded-for": "1.2.3.4",
            "x-github-delivery": "d",
        }
    )
    assert kept == {"x-event-type": "a", "x-github-delivery": "d"}


def test_parse_line_round_trips_a_record() -> None:
    line = json.dumps(
        {
            "source": "s",
            "type": "t",
            "idempotency_key": "k",
            "headers": {"x-signature": "leak", "x-a": "b"},
            "body": "aGk=",
            "body_encoding": "base64",
        }
    )
    rec = record_replay.parse_line(line, 7)
    assert (rec.body, rec.headers, rec.line) == (b"hi", {"x-a": "b"}, 7)
    with pytest.raises(errors.ConfigError, match=r"reads solo-os\.event/1"):
        record_replay.parse_line('{"format": "other/2"}', 1)


def test_rebuild_carries_a_svix_message_id_over(app_file: Path) -> None:
    app = _loader.load_app(str(app_file))
    env = secrets(app_file)
    source = app.sources["svix"]
    assert source.bind("svix", env) == []
    rec = record_replay.Recorded(
        line=1,
        source="svix",
        type="user.created",
        idempotency_key="msg_1",
        headers={"svix-id": "msg_1", "svix-timestamp": "1"},
        body=b'{"type": "user.created"}',
    )
    headers, key = record_replay.rebuild(source, rec, 1_900_000_000.0)
    assert key == "msg_1" and headers["webhook-id"] == "msg_1" and "svix-timestamp" not in headers
    source.verify(DictHeaders(headers), rec.body, 1_900_000_000.0)  # raises if not verifiable


async def test_replay_shows_a_progress_bar_on_a_terminal(
    app_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import httpx
    from rich.console import Console

    from solo_os.cli import _common

    screen = io.StringIO()
    monkeypatch.setattr(_common, "err", Console(file=screen, force_terminal=True, width=100))
    app = _loader.load_app(str(app_file))
    env = secrets(app_file)
    monkeypatch.setattr(record_replay.config, "environ", lambda: env)
    bound = record_replay._bind(app, {"billing"})
    recs = [
        record_replay.Recorded(
            line=n,
            source="billing",
            type="invoice.paid",
            idempotency_key=f"k{n}",
            headers={"x-event-type": "invoice.paid", "x-idempotency-key": f"k{n}"},
            body=b'{"n": %d}' % n,
        )
        for n in (1, 2)
    ]
    seen: list[str] = []

    def target(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-signature"].startswith("sha256=")
        seen.append(request.headers["x-idempotency-key"])
        status = "accepted" if seen.count(seen[-1]) == 1 else "duplicate"
        return httpx.Response(200, json={"status": status})

    results = await record_replay._replay(
        bound, recs, "http://target.test", 2, 5.0, quiet=False, transport=httpx.MockTransport(target)
    )
    assert [r["outcome"] for r in results] == ["accepted", "duplicate"] * 2
    assert seen == ["k1", "k1", "k2", "k2"]
    assert "replaying" in screen.getvalue() and "4/4" in screen.getvalue()
