"""Settings and secrets for an app under test: nothing read from the environment or ``.env``."""

from __future__ import annotations

import secrets as secrets_mod
from collections.abc import Mapping
from typing import Any

import pydantic

from solo_os import app as app_mod
from solo_os import config, errors
from solo_os.sources import _base as sources_base

BASE_URL = "http://solo-os.test"  # where the test client sends deliveries

class _IsolatedSettings(config.Settings):
    """Settings from the given values only: tests do not read the environment or ``.env``."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, *_: Any, **__: Any) -> Any:
        return (init_settings,)


def isolated_settings(
    application: app_mod.App, database_url: str, overrides: Mapping[str, Any] | None = None
) -> config.Settings:
    """The app's settings for a test: its explicit ``App(settings=...)`` if any, else the
    defaults, with ``DATABASE_URL`` and ``overrides`` (SPEC names, ``MAX_RETRY_ATTEMPTS``, or
    field names, ``max_retry_attempts``) applied."""
    fields = config.Settings.model_fields
    by_alias = {(f.alias or n).upper(): n for n, f in fields.items()}
    values: dict[str, Any] = {}
    for key, value in {**(overrides or {}), "DATABASE_URL": database_url}.items():
        name = key if key in fields else by_alias.get(key.upper())
        if name is None:
            raise errors.ConfigError(f"solo-os test settings: unknown setting {key!r}")
        values[fields[name].alias or name] = value
    base = application._settings  # explicit settings given to App(...), or None
    if base is not None:
        values = {**{(f.alias or n): getattr(base, n) for n, f in fields.items()}, **values}
    try:
        return _IsolatedSettings(**values)
    except pydantic.ValidationError as exc:
        problems = [
            f"{str(e['loc'][0]).upper() if e['loc'] else 'config'}: {e['msg']}" for e in exc.errors()
        ]
        raise errors.ConfigError(problems) from None


def generate_secret(source: sources_base.Source) -> str:
    """A fresh secret in the form ``source`` accepts (Stripe ``whsec_...``, Standard Webhooks
    ``whsec_<base64>``, any text for the rest)."""
    # Every built-in source's example fits its own format; a user's Source subclass may have
    # a format its example_secret() does not know about, hence the second candidate.
    candidates = [source.example_secret(), f"whsec_test_{secrets_mod.token_hex(16)}"]
    for candidate in candidates:
        if source.check_secrets((candidate,)) is None:
            return candidate
    raise errors.ConfigError(
        f"source {source.name or source.kind!r}: no test secret fits its format; give one"
        f" as {source.secret_env} in the solo_env fixture (or env= of solo_os.testing.run)"
    )


_session_secrets: dict[tuple[str, str], str] = {}


def secrets_for(application: app_mod.App, given: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the app reads its secrets from in a test: ``given``, with a generated
    secret for every source whose variable it does not set, the test server's URL for a
    source's ``public_url_env`` (Twilio, Square, HubSpot), and placeholders for the alert
    channels' variables (URLs on ``alerts.solo-os.test``: nothing is sent from a test)."""
    env = dict(given or {})
    for name, source in application.sources.items():
        for url_env, holds in source.variables().items():  # Twilio's public_url_env=, ...
            if holds == "public URL" and url_env not in env:
                env[url_env] = f"{BASE_URL}/webhooks/{name}"
        if not source.verify_signatures or not source.secret_env:
            continue
        if source.secret_env in env or f"{source.secret_env}_FILE" in env:
            continue
        source.name = source.name or name
        # One secret per variable and kind for the whole session: every secret is added to the
        # log redactor, which must not grow with each test.
        cache_key = (source.kind, source.secret_env)
        if cache_key not in _session_secrets:
            _session_secrets[cache_key] = generate_secret(source)
        env[source.secret_env] = _session_secrets[cache_key]
    alerting = application.alerting
    for channel in alerting.channels if alerting is not None else ():
        for attribute in ("url_env", "secret_env", "username_env", "password_env"):
            variable = getattr(channel, attribute, None)
            if isinstance(variable, str) and variable not in env:
                if attribute == "url_env":  # an Apprise channel needs a URL Apprise knows
                    scheme = "json" if getattr(channel, "kind", "") == "apprise" else "https"
                    env[variable] = f"{scheme}://alerts.solo-os.test/{channel.name}"
                else:
                    env[variable] = _session_secrets.setdefault(
                        ("alerts", variable), f"solo-test-{secrets_mod.token_hex(16)}"
                    )
    return env
