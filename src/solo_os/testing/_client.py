"""Signed deliveries, built by the app's own sources and posted through the real ASGI app."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

import httpx

from solo_os import app as app_mod
from solo_os import errors
from solo_os.runtime import ingress
from solo_os.sources import _base as sources_base
from solo_os.sources import _decode as sources_decode
from solo_os.testing import _clock


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One webhook delivery: what a provider would POST to ``/webhooks/{source}``."""

    source: str
    event_type: str
    body: bytes
    headers: dict[str, str]
    idempotency_key: str  # the key the source files it under (a retry of it is a duplicate)

    @property
    def document(self) -> Any:
        """The body as the handler's schema sees it before ``payload=``: parsed JSON, or the
        decoded form (Slack slash commands, Twilio)."""
        return sources_decode.decode_body(sources_base.DictHeaders(self.headers), self.body)


@dataclasses.dataclass(frozen=True)
class Posted:
    """A delivery and the answer solo-os gave it."""

    delivery: Delivery
    response: httpx.Response

    def __repr__(self) -> str:
        return (
            f"<Posted {self.delivery.source} {self.delivery.event_type!r}"
            f" -> {self.status_code} {self.response.text[:200]}>"
        )

    @property
    def status_code(self) -> int:
        return self.response.status_code

    def json(self) -> Any:
        return self.response.json()

    @property
    def status(self) -> str | None:
        """``accepted`` or ``duplicate``; for an error response its code (``invalid_signature``,
        ``invalid_payload``, ...)."""
        try:
            answer = self.response.json()
        except ValueError:
            return None
        if not isinstance(answer, dict):
            return None
        value = answer.get("status", answer.get("error"))
        if value is None:  # the provider's own answer (a Discord interaction response)
            value = self.response.headers.get(ingress.ACK_STATUS)
        return value if isinstance(value, str) else None

    @property
    def event_id(self) -> UUID | None:
        try:
            value = self.response.json().get("event_id")
        except (ValueError, AttributeError):
            return None
        value = value or self.response.headers.get(ingress.ACK_EVENT_ID)
        return UUID(value) if isinstance(value, str) else None

    @property
    def executions(self) -> int | None:
        """How many executions the delivery started (accepted only)."""
        try:
            value = self.response.json().get("executions")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, int) else None


class DeliveryClient:
    """Builds deliveries with each source's own ``compose`` and ``sign`` and posts them.

    ``send("billing", "invoice.paid", data)`` works for any source (every provider in
    ``solo_os.sources``; ``send("paddle", ...)`` picks the app's one source of that kind);
    ``stripe(...)``, ``github(...)``, ``shopify(...)``, ``slack(...)``,
    ``standard_webhooks(...)`` and ``hmac(...)`` are shorthands, and any source name works as
    a method too (``client.billing("invoice.paid", data)``). Sources that verify with a
    public key (Discord, SendGrid) sign with the test private key the kit generates.
    ``http`` is the underlying ``httpx.AsyncClient`` for anything else (``/healthz``, the
    admin API).
    """

    def __init__(self, application: app_mod.App, http: httpx.AsyncClient, clock: _clock.Clock) -> None:
        self.app = application
        self.http = http
        self.clock = clock

    # --- building ----------------------------------------------------------------------------

    def source(self, name: str) -> sources_base.Source:
        """The app's source named ``name``, else its one source of kind ``name``."""
        found = self.app.sources.get(name)
        if found is not None:
            return found
        of_kind = [s for s in self.app.sources.values() if s.kind == name]
        if len(of_kind) == 1:
            return of_kind[0]
        known = ", ".join(f"{n} ({s.kind})" for n, s in self.app.sources.items()) or "none"
        if of_kind:
            names = ", ".join(repr(s.name) for s in of_kind)
            raise errors.ConfigError(
                f"the app has {len(of_kind)} {name} sources ({names});"
                " name one: send(NAME, event_type, data)"
            )
        raise errors.ConfigError(f"the app has no source named or of kind {name!r} (it has: {known})")

    def build(
        self,
        source: str,
        event_type: str,
        data: Any,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Delivery:
        """A correctly signed delivery, as the provider would send it now (test time).

        ``headers`` are added before signing (a fixed ``x-idempotency-key``, a
        ``x-correlation-id``); the signature is the source's own, with its first secret.
        """
        src = self.source(source)
        now = self.clock.time()
        body, built = src.compose(event_type, data, now)
        built.update({k.lower(): v for k, v in (headers or {}).items()})
        if src.verify_signatures:
            built.update(src.sign(body, now, built))
        return Delivery(src.name, event_type, body, built, _key(src, built, body))

    def resign(self, delivery: Delivery) -> Delivery:
        """The same delivery (body, ids) signed again at the current test time, as a provider
        signs each retry."""
        src = self.source(delivery.source)
        if not src.verify_signatures:
            return delivery
        headers = {k: v for k, v in delivery.headers.items() if k.lower() not in src.secret_headers}
        headers.update(src.sign(delivery.body, self.clock.time(), headers))
        return dataclasses.replace(delivery, headers=headers)

    # --- posting -----------------------------------------------------------------------------

    async def post(self, delivery: Delivery, *, sign: bool = True) -> Posted:
        """POST ``delivery`` through the ASGI app; re-signed at the current test time unless
        ``sign=False`` (then its headers go as they are, e.g. a tampered signature)."""
        if sign:
            delivery = self.resign(delivery)
        response = await self.http.post(
            f"/webhooks/{delivery.source}", content=delivery.body, headers=delivery.headers
        )
        return Posted(delivery, response)

    async def send(
        self,
        source: str,
        event_type: str,
        data: Any,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Posted:
        """Build a signed ``event_type`` delivery carrying ``data`` for ``source`` and post it."""
        return await self.post(self.build(source, event_type, data, headers=headers), sign=False)

    async def raw(
        self, source: str, body: bytes | str, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST any bytes with any headers to ``/webhooks/{source}`` (nothing is signed)."""
        content = body.encode("utf-8") if isinstance(body, str) else body
        return await self.http.post(f"/webhooks/{source}", content=content, headers=dict(headers or {}))

    async def stripe(self, event_type: str, data: Any, *, headers: Mapping[str, str] | None = None) -> Posted:
        """A Stripe event: ``data`` becomes ``data.object`` of an ``evt_...`` envelope."""
        return await self.send("stripe", event_type, data, headers=headers)

    async def github(self, event_type: str, data: Any, *, headers: Mapping[str, str] | None = None) -> Posted:
        """A GitHub delivery: ``"issues.opened"`` is event ``issues`` with ``action: opened``."""
        return await self.send("github", event_type, data, headers=headers)

    async def shopify(
        self, event_type: str, data: Any, *, headers: Mapping[str, str] | None = None
    ) -> Posted:
        """A Shopify webhook with topic ``event_type`` (``orders/create``)."""
        return await self.send("shopify", event_type, data, headers=headers)

    async def slack(self, event_type: str, data: Any, *, headers: Mapping[str, str] | None = None) -> Posted:
        """A Slack Events API callback whose inner event has type ``event_type``."""
        return await self.send("slack", event_type, data, headers=headers)

    async def standard_webhooks(
        self, event_type: str, data: Any, *, headers: Mapping[str, str] | None = None
    ) -> Posted:
        """A Standard Webhooks message ``{"type": event_type, "data": data, ...}``."""
        return await self.send("standard_webhooks", event_type, data, headers=headers)

    async def hmac(self, event_type: str, data: Any, *, headers: Mapping[str, str] | None = None) -> Posted:
        """A delivery for the app's one ``sources.hmac`` source."""
        return await self.send("hmac", event_type, data, headers=headers)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Posted]]:
        # Any source name is a method: client.billing("invoice.paid", data).
        if name.startswith("_") or name not in self.__dict__.get("app", _NoApp).sources:
            raise AttributeError(
                f"{type(self).__name__} has no attribute {name!r}"
                " (source names and send(source, type, data) work)"
            )
        return functools.partial(self.send, name)


class _NoApp:
    sources: Mapping[str, Any] = {}


def _key(source: sources_base.Source, headers: Mapping[str, str], body: bytes) -> str:
    """The idempotency key solo-os will file this delivery under."""
    wrapped = sources_base.DictHeaders(dict(headers))
    try:
        raw = source.idempotency_key(wrapped, source.decode(wrapped, body))
    except errors.PayloadError:
        raw = None
    return ingress.storable_key(raw) if raw else sources_base.digest_key(body)


__all__ = ["Delivery", "DeliveryClient", "Posted"]
