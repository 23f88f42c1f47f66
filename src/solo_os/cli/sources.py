"""``solo-os sources``: the app's sources, their routes, and the variables each one reads.

Only whether a variable is set, and whether a plain value has the source's form, is shown,
never a value; references (``file:``, ``aws-sm:``, ...) are not resolved here (``config check``
does that). ``--test-secret NAME`` prints a fresh secret in the form source ``NAME`` accepts,
for local testing with ``solo-os send`` (for Discord and SendGrid a test private key, whose
public half verifies what it signs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.table import Table

from solo_os import config, errors
from solo_os import secret_sources as secrets_mod
from solo_os.cli import _common
from solo_os.sources import _base as sources_base
from solo_os.sources import _keys


def variable_status(source: sources_base.Source, variable: str, holds: str, env: Mapping[str, str]) -> str:
    """``set``, ``not set``, ``reference`` or the problem with its form (never the value)."""
    value = env.get(variable, "").strip()
    if not value:
        return "set (file)" if env.get(f"{variable}_FILE", "").strip() else "not set"
    if holds != "secret":
        return "set"
    if not secrets_mod.is_static(variable, env):
        return "reference"
    problem = source.check_secrets(sources_base.parse_secrets(value))
    return f"invalid: {problem}" if problem else "set"


def describe(application: Any, env: Mapping[str, str]) -> list[dict[str, Any]]:
    rows = []
    for name, source in application.sources.items():
        variables = [
            {"name": variable, "holds": holds, "status": variable_status(source, variable, holds, env)}
            for variable, holds in source.variables().items()
        ] if source.verify_signatures else []
        rows.append({
            "name": name,
            "kind": source.kind,
            # a queue-fed source has no route: where its consumer reads (no credentials)
            "route": f"POST /webhooks/{name}" if source.http else f"consume {source.location()}",
            "verify": source.verify_signatures,
            "variables": variables,
        })
    return rows


def new_test_secret(application: Any, name: str) -> tuple[str, str | None]:
    """A fresh secret for source ``name`` (a name, or the app's one source of that kind), and
    for a test private key the public key that goes with it."""
    source = application.sources.get(name)
    if source is None:
        of_kind = [s for s in application.sources.values() if s.kind == name]
        if len(of_kind) != 1:
            known = ", ".join(sorted(application.sources)) or "none"
            raise errors.ConfigError(f"--test-secret: the app has no source {name!r} (it has: {known})")
        source = of_kind[0]
    secret = source.example_secret()
    public = None
    if secret.startswith(_keys.PRIVATE):
        public = (_keys.ed25519_public_hex if source.kind == "discord" else _keys.p256_public_b64)(secret)
    return secret, public


def sources(
    app_arg: _common.AppArg = None,
    app: _common.AppOpt = None,
    as_json: _common.Json = False,
    secret_for: Annotated[
        str | None,
        typer.Option("--test-secret", metavar="NAME", help="print a fresh test secret for source NAME"),
    ] = None,
) -> None:
    """The app's sources: route, kind and the variables each reads (set or not, never values)."""
    with _common.friendly_errors():
        application = _common.load_app(app_arg or app)
        if secret_for is not None:
            secret, public = new_test_secret(application, secret_for)
            if as_json:
                _common.emit_json({"source": secret_for, "secret": secret, "public_key": public})
                return
            _common.out.print(secret, highlight=False, soft_wrap=True)
            if public is not None:
                _common.err.print(
                    f"a test private key; its public key (what the provider would show): {public}",
                    highlight=False, soft_wrap=True,
                )
            return
        rows = describe(application, config.environ())
    if as_json:
        _common.emit_json(rows)
        return
    table = Table(title="Sources", title_justify="left", header_style="bold")
    for column in ("source", "kind", "route", "reads"):
        table.add_column(column, overflow="fold")
    for r in rows:
        reads = "\n".join(f"{v['name']} ({v['holds']}): {v['status']}" for v in r["variables"])
        table.add_row(r["name"], r["kind"], r["route"], reads or "nothing (verify=False)")
    _common.out.print(table)
    if not rows:
        _common.out.print("(none)")
