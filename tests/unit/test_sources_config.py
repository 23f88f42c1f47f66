"""What every source checks of its configuration at start, declared once on ``Source``:
the provider's other credentials pasted instead of the webhook secret (``mistaken_prefixes``),
the timestamp tolerance (``default_tolerance``, ``tolerance=``) and, for schemes that sign the
URL, ``url=``/``public_url_env=``."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from solo_os import errors, sources
from solo_os.sources import _public_url

URL_SIGNED = {"square", "twilio", "hubspot"}


def _make(kind: str, **kw: Any) -> sources.Source:
    factory = getattr(sources, kind)
    if kind in URL_SIGNED:
        kw.setdefault("url", "https://hooks.example.com/webhooks/x")
    made: sources.Source = factory(secret_env="MY_SECRET", **kw)
    return made


# The webhook providers: every factory that takes a secret (not the implied ``internal`` source
# nor the queue-fed ones, which have no signature to check).
FACTORIES = [
    n
    for n in sources.__all__
    if n[0].islower() and "secret_env" in inspect.signature(getattr(sources, n)).parameters
]
MISTAKES = [
    (kind, prefix)
    for kind in FACTORIES
    for prefix in type(_make(kind)).mistaken_prefixes
]


def test_every_provider_names_some_credential_users_paste_by_mistake() -> None:
    named = {kind for kind, _ in MISTAKES}
    # hmac and standard_webhooks are generic; github, postmark and resend have no other
    # credential of a recognisable form; discord and twilio check the secret's own form.
    assert set(FACTORIES) - named == {
        "hmac", "standard_webhooks", "github", "postmark", "resend", "discord", "twilio"
    }


@pytest.mark.parametrize(("kind", "prefix"), MISTAKES)
def test_a_mistaken_credential_is_refused_naming_what_it_is_never_its_value(
    kind: str, prefix: str
) -> None:
    source = _make(kind)
    secret = prefix + "Zq81aVbW4xYp0c7N3mR5tL2k"
    problems = source.bind(kind, {"MY_SECRET": f"{source.example_secret()},{secret}"})
    assert problems == [f"MY_SECRET: secret #2 is {type(source).mistaken_for}"]
    assert secret not in problems[0] and "Zq81aVbW" not in problems[0]


@pytest.mark.parametrize("kind", FACTORIES)
def test_the_example_secret_is_never_mistaken(kind: str) -> None:
    source = _make(kind)
    assert source.bind(kind, {"MY_SECRET": source.example_secret()}) == []


@pytest.mark.parametrize(
    ("kind", "default"), [("stripe", 300), ("slack", 300), ("linear", 60), ("calendly", 180)]
)
def test_tolerance_defaults_per_provider_and_is_validated_naming_it(
    kind: str, default: int
) -> None:
    assert _make(kind).tolerance == default
    assert _make(kind, tolerance=42).tolerance == 42
    with pytest.raises(errors.ConfigError, match=f"sources.{kind}: tolerance"):
        _make(kind, tolerance=0)


@pytest.mark.parametrize("kind", sorted(URL_SIGNED))
def test_url_signing_sources_need_exactly_one_public_url(kind: str) -> None:
    source = getattr(sources, kind)(secret_env="MY_SECRET")
    assert isinstance(source, _public_url.PublicUrlSource)
    problems = source.bind(kind, {"MY_SECRET": source.example_secret()})
    assert problems and f"sources.{kind} signs the URL" in problems[0]
    with pytest.raises(errors.ConfigError, match=f"sources.{kind}: give url= or public_url_env="):
        getattr(sources, kind)(secret_env="S", url="https://a.example/x", public_url_env="URL")
    by_env = getattr(sources, kind)(secret_env="MY_SECRET", public_url_env="HOOK_URL")
    env = {"MY_SECRET": by_env.example_secret(), "HOOK_URL": "https://hooks.example.com/w"}
    assert by_env.bind(kind, env) == []
    assert by_env.variables() == {"MY_SECRET": "secret", "HOOK_URL": "public URL"}
