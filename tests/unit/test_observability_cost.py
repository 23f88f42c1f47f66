"""The per-execution observability that costs nothing when nobody listens (issue 21): spans are
a shared no-op without a tracer provider, and the log redactor remembers its verdict per key,
skipping only the fields solo-os fills itself, without ever letting a secret through."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

from solo_os.observability import logs

PROBE = textwrap.dedent(
    """
    import json
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from solo_os.observability import tracing

    PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    out = {}
    a, b = tracing.span("one"), tracing.span("two", attributes={"k": 1})
    out["shared_noop"] = a is b
    with a as s:
        out["noop_recording"] = s.is_recording()
        out["noop_current_valid"] = trace.get_current_span().get_span_context().is_valid
    with tracing.span("child", parent=PARENT) as s:
        out["child_trace"] = format(s.get_span_context().trace_id, "032x")
        out["child_propagates"] = tracing.current_traceparent()
    trace.set_tracer_provider(TracerProvider())
    with tracing.span("after") as s:
        out["after_provider_recording"] = s.is_recording()
    print(json.dumps(out))
    """
)


def test_spans_are_a_shared_noop_until_a_provider_is_set_and_a_remote_parent_still_carries_on() -> None:
    # A fresh interpreter: the suite's own tests install an SDK provider process-wide.
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["shared_noop"] is True
    assert out["noop_recording"] is False and out["noop_current_valid"] is False
    # a sender's traceparent stored with the execution still flows to ctx.http's calls
    assert out["child_trace"] == "0af7651916cd43dd8448eb211c80319c"
    assert out["child_propagates"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert out["after_provider_recording"] is True


def _line(r: logs.Redactor, **event: Any) -> dict[str, Any]:
    return dict(r(None, "info", dict(event)))


def test_redactor_remembers_verdicts_but_a_key_declared_later_is_hidden_from_then_on() -> None:
    r = logs.Redactor()
    assert _line(r, card_last4="4242")["card_last4"] == "4242"
    r.add_keys("card_last4")  # App(redact=[...]) of a reloaded app
    assert _line(r, card_last4="4242")["card_last4"] == logs.REDACTED
    assert _line(r, payload={"Card_Last4": "1"})["payload"] == {"Card_Last4": logs.REDACTED}
    for key in ("stripe_signature", "X-Api_Key", "refresh_token", "db_password"):
        assert _line(r, **{key: "v"})[key] == logs.REDACTED, key


def test_secret_values_are_removed_from_every_field_a_user_or_sender_can_fill() -> None:
    r = logs.Redactor()
    secret = "whsec_s3cr3t-value"
    r.add(secret)
    line = _line(
        r,
        event=f"calling with {secret}",
        handler="fulfil",
        correlation_id=f"corr-{secret}",
        error=f"boom: {secret}",
        data={"nested": [f"x{secret}y"]},
        execution_id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        duration_ms=1.5,
    )
    assert secret not in json.dumps(line)
    assert line["event"] == f"calling with {logs.REDACTED}"
    assert line["data"] == {"nested": [f"x{logs.REDACTED}y"]}
    assert line["execution_id"] == "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    assert line["duration_ms"] == 1.5
