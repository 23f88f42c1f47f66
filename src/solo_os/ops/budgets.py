"""Attempt budgets: how many attempts a replayed, re-run or resent execution gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from solo_os import app as app_mod


@dataclass(frozen=True)
class Budgets:
    """``max_attempts`` per handler name, and the budget of a handler not named."""

    default: int
    handlers: Mapping[str, int] = field(default_factory=dict)
    app: app_mod.App | None = None  # a replay evaluates flow keys again with its handlers


def of_handler(application: app_mod.App, handler: app_mod.Handler) -> int:
    """The handler's own ``max_attempts``, else the app's ``MAX_RETRY_ATTEMPTS``."""
    return application.policy(handler).max_attempts or application.settings.max_retry_attempts


def of_app(application: app_mod.App, default: int | None = None) -> Budgets:
    """Every handler's budget; ``default`` (else the app's setting) for the rest."""
    base = application.settings.max_retry_attempts if default is None else default
    handlers = {h.name: application.policy(h).max_attempts or base for h in application.handlers.values()}
    return Budgets(base, handlers, application)
