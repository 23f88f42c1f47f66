"""The admin API (``/api``) and the dashboard (``/dashboard``).

Both exist only when ``SOLO_OS_ADMIN_TOKEN`` is set: without it ``routes`` returns nothing
and neither path is served at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.routing import BaseRoute, Mount

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.admin import auth, dashboard


class _Mount(Mount):
    """A ``Mount`` whose prefix also takes paths holding a newline (``%0A``).

    Starlette's pattern stops at a newline, so such a path under ``/api/`` would miss the
    mount and get the outer app's plain-text 404 without passing the token check.
    """

    def __init__(self, path: str, app: Any) -> None:
        super().__init__(path, app=app)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


def routes(application: app_mod.App, store: Callable[[], store_mod.Store]) -> list[BaseRoute]:
    """The admin routes for ``application``, or none when no admin token is configured."""
    token = application.settings.admin_token
    if token is None:
        return []
    try:
        from solo_os.admin import api
    except ImportError as exc:  # FastAPI is what the API is built on
        raise errors.ConfigError(
            f"SOLO_OS_ADMIN_TOKEN is set, but the admin API cannot load ({exc}); "
            "install FastAPI (pip install fastapi) or unset the token"
        ) from None
    guard = auth.Guard(token.get_secret_value())
    return [
        _Mount("/api", auth.RequireAdmin(api.build(application, store), guard)),
        *dashboard.Dashboard(guard, auth.SharedLoginLimiter(store)).routes(),
    ]


__all__ = ["routes"]
