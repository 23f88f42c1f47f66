"""What the admin API's routers share: the ``Admin`` dependency, query types, errors, pages.

Lists are keyset pages, newest first: ``next_cursor`` is an opaque string to pass back as
``?cursor=``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Query, Request

from solo_os import app as app_mod
from solo_os import store as store_mod
from solo_os.admin import auth, models
from solo_os.core import records

T = TypeVar("T")
MAX_IDS_SHOWN = 1000



class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str = "") -> None:
        super().__init__(message or error)
        self.status = status
        self.error = error
        self.message = message


@dataclass(frozen=True)
class Admin:
    """What the routes work on."""

    app: app_mod.App
    store: Callable[[], store_mod.Store]


def admin(request: Request) -> Admin:
    found: Admin = request.app.state.admin
    return found


def principal(request: Request) -> auth.Principal:
    found: auth.Principal = request.scope["state"]["admin"]
    return found


AdminDep = Annotated[Admin, Depends(admin)]
Limit = Annotated[int, Query(ge=1, le=models.MAX_PAGE, description="page size")]
CursorQ = Annotated[str | None, Query(max_length=200, description="next_cursor of the last page")]
NameQ = Annotated[models.Name | None, Query()]
Since = Annotated[datetime | None, Query(description="ISO 8601; UTC when it names no zone")]
SearchQ = Annotated[
    models.SearchText | None,
    Query(description="an id, idempotency key or correlation id (exact), or payload text (events)"),
]
KindQ = Annotated[models.ExecutionKind | None, Query(description="webhook runs or cron runs")]

ERRORS = {
    400: {"model": models.ErrorOut, "description": "a bad cursor or time"},
    401: {"model": models.ErrorOut, "description": "no valid admin token or session"},
    403: {"model": models.ErrorOut, "description": "CSRF check failed"},
    503: {"model": models.ErrorOut, "description": "the store is unreachable"},
}
NOT_FOUND: Any = {404: {"model": models.ErrorOut, "description": "no such record"}}
CONFLICT: Any = {409: {"model": models.ErrorOut, "description": "not in a state that allows it"}}


def new_router() -> APIRouter:
    """A router of this API: every route answers these errors too."""
    return APIRouter(responses=ERRORS)  # type: ignore[arg-type]


# --- helpers ---------------------------------------------------------------------------------


def utc(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ApiError(400, "invalid_time", f"{name} is out of range") from None


def encode_cursor(moment: datetime, last_id: UUID) -> str:
    raw = f"{moment.astimezone(UTC).isoformat()}|{last_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment_text, id_text = raw.split("|")
        moment = datetime.fromisoformat(moment_text)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment.astimezone(UTC), UUID(id_text)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None


def page(
    items: list[T], limit: int, key: Callable[[T], tuple[datetime, UUID]]
) -> tuple[list[T], str | None]:
    """The first ``limit`` items and the cursor after them (one extra row was fetched)."""
    if len(items) <= limit:
        return items, None
    kept = items[:limit]
    return kept, encode_cursor(*key(kept[-1]))


def event_out(e: records.Event) -> models.EventOut:
    return models.EventOut(
        id=e.id,
        source=e.source,
        type=e.type,
        idempotency_key=e.idempotency_key,
        status=e.status,
        correlation_id=e.correlation_id,
        received_at=e.received_at,
    )


def execution_out(x: records.Execution) -> models.ExecutionOut:
    return models.ExecutionOut(**asdict(x), kind="webhook" if x.event_id is not None else "cron")


_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})


def safe_headers(application: app_mod.App, source: str, headers: dict[str, str] | None) -> dict[str, str]:
    """Stored headers, minus anything secret-looking (ingress already dropped signatures).

    A second filter on the way out: rows stored by an older version, or by a source whose
    ``secret_headers`` grew since, show no credential either.
    """
    src = application.sources.get(source)
    drop = _CREDENTIAL_HEADERS | (src.secret_headers if src is not None else frozenset())
    return {
        k: v for k, v in (headers or {}).items() if k.lower() not in drop and "signature" not in k.lower()
    }


def body_text(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def parsed_json(raw: bytes) -> Any:
    """The JSON of a body the store kept only raw (a rejected event's), or None."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def bulk_filters(body: models.ExecutionFilter) -> store_mod.Filters:
    """The filter of a bulk action (its status is the action's: ``ops.select.matching``)."""
    return store_mod.Filters(
        source=body.source,
        type=body.type,
        handler=body.handler,
        error=body.error,
        since=utc(body.since, "since"),
        until=utc(body.until, "until"),
        limit=body.limit,
        ids=tuple(dict.fromkeys(body.ids)) if body.ids is not None else None,
    )
