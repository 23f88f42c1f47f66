"""``sources.internal``: the app's own events (``ctx.send``), implied in every app.

Handlers listen with ``@app.on("internal", type)``. Events sent by handlers never cross HTTP.
From outside, ``solo-os send internal TYPE --data ...`` (or any client) may inject one over
``POST /webhooks/internal``, signed like ``sources.hmac`` (``x-signature``: HMAC-SHA256 of the
body, hex) with ``SOLO_OS_INTERNAL_SECRET``; without that variable set, every delivery over
HTTP is refused (401), and the app still starts.
"""

from __future__ import annotations

from collections.abc import Mapping

from solo_os.sources.hmac import HmacSource

SECRET_ENV = "SOLO_OS_INTERNAL_SECRET"  # noqa: S105 - the variable's name, not a secret


class InternalSource(HmacSource):
    kind = "internal"

    def bind(self, name: str, env: Mapping[str, str]) -> list[str]:
        if not env.get(SECRET_ENV, "").strip() and not env.get(f"{SECRET_ENV}_FILE", "").strip():
            self.name = name
            self._secrets = ()  # nothing verifies: HTTP deliveries are refused
            return []
        return super().bind(name, env)


def internal() -> InternalSource:
    """The source of ``ctx.send``'s events (``app.source("internal", sources.internal())`` is
    implied; declare it yourself only to change its options)."""
    return InternalSource(secret_env=SECRET_ENV)
