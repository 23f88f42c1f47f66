"""The public URL a provider calls, for schemes that sign it (Twilio, Square, HubSpot).

Behind a proxy or a tunnel the URL the provider called (``https://hooks.example.com/...``) is
not the one the process sees (``http://10.0.0.5:8000/...``), so it is configured, never taken
from the request: ``url=`` in code or ``public_url_env=`` naming a variable. One of them is
required; a source without it would refuse every delivery, so it stops the start instead.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping

from solo_os import errors
from solo_os.sources import _base

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BAD = re.compile(r"[\x00-\x20\x7f]")


def url_problem(value: str) -> str | None:
    """Why ``value`` is not an absolute http(s) URL a provider could call, or None."""
    if _BAD.search(value):
        return "holds spaces or control characters"
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an absolute http:// or https:// URL"
    if parts.fragment:
        return "has a #fragment, which is never sent"
    try:
        _ = parts.port
    except ValueError:
        return "has an invalid port"
    return None


class PublicUrl:
    """``url=`` or ``public_url_env=`` of a source; ``value`` once bound."""

    def __init__(self, factory: str, url: str | None, url_env: str | None) -> None:
        if url is not None and url_env is not None:
            raise errors.ConfigError(f"{factory}: give url= or public_url_env=, not both")
        if url is not None and (problem := url_problem(url)) is not None:
            raise errors.ConfigError(f"{factory}: url={url!r} {problem}")
        if url_env is not None and not _NAME.fullmatch(url_env):
            raise errors.ConfigError(
                f"{factory}: public_url_env={url_env!r} is not an environment variable name"
            )
        self.factory = factory
        self.url_env = url_env
        self.value = url

    def bind(self, name: str, env: Mapping[str, str]) -> list[str]:
        """Read ``public_url_env``; the problems, naming the variable (a URL is no secret)."""
        if self.url_env is not None:
            text = env.get(self.url_env, "").strip()
            if not text:
                return [
                    f"{self.url_env}: not set; source {name!r} needs the public URL the"
                    " provider calls (it is part of what is signed)"
                ]
            if (problem := url_problem(text)) is not None:
                return [f"{self.url_env}: {text!r} {problem}"]
            self.value = text
        elif self.value is None:
            return [
                f"source {name!r}: {self.factory} signs the URL it calls; give url="
                " or public_url_env= (the URL as configured at the provider)"
            ]
        return []

    def get(self) -> str:
        if self.value is None:
            raise errors.ConfigError(f"{self.factory}: the public URL is not configured")
        return self.value


class PublicUrlSource(_base.Source):
    """A source whose scheme signs the URL the provider called (Square, Twilio, HubSpot)."""

    def __init__(
        self,
        *,
        secret_env: str | None,
        url: str | None = None,
        public_url_env: str | None = None,
        verify: bool = True,
        max_body_bytes: int | None = None,
        payload: str | None = None,
        tolerance: int | None = None,
    ) -> None:
        super().__init__(
            secret_env=secret_env,
            verify=verify,
            max_body_bytes=max_body_bytes,
            payload=payload,
            tolerance=tolerance,
        )
        self.public_url = PublicUrl(f"sources.{self.kind}", url, public_url_env)

    def bind(self, name: str, env: Mapping[str, str]) -> list[str]:
        problems = super().bind(name, env)
        return problems + (self.public_url.bind(name, env) if self.verify_signatures else [])

    def variables(self) -> dict[str, str]:
        found = super().variables()
        if self.public_url.url_env:
            found[self.public_url.url_env] = "public URL"
        return found


def port_variants(url: str) -> list[str]:
    """``url`` as given, without its port and with the default port made explicit.

    Twilio's own validator tries the URL with and without the port, because Twilio's signing
    is not consistent about it (twilio-python ``RequestValidator.validate``).
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    variants = [url]
    for netloc in (prefix + host, f"{prefix}{host}:{port}"):
        candidate = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        if candidate not in variants:
            variants.append(candidate)
    return variants
