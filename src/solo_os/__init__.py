"""solo-os: verified, deduplicated webhooks and idempotent handlers, in one Python file.

The public names load on first use (PEP 562), so ``import solo_os`` and the ``solo-os`` command
start without importing pydantic, SQLAlchemy or the web stack; type checkers and IDEs see the
imports below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from solo_os import sources
    from solo_os.app import App
    from solo_os.core.flow import Batch, Concurrency, Debounce, RateLimit, Singleton, Throttle
    from solo_os.core.retry import Retry
    from solo_os.core.workflow import CancelOn
    from solo_os.errors import (
        ConfigError,
        InvokeError,
        NonRetryable,
        RateLimited,
        RetryAfter,
        SignatureError,
        SoloOSError,
        StoreError,
    )
    from solo_os.runtime.context import Context

__version__ = "0.1.0"

__all__ = [
    "App",
    "Batch",
    "CancelOn",
    "Concurrency",
    "ConfigError",
    "Context",
    "Debounce",
    "InvokeError",
    "NonRetryable",
    "RateLimit",
    "RateLimited",
    "Retry",
    "RetryAfter",
    "SignatureError",
    "Singleton",
    "SoloOSError",
    "StoreError",
    "Throttle",
    "sources",
]

_WHERE = {
    "App": "solo_os.app",
    "Context": "solo_os.runtime.context",
    "ConfigError": "solo_os.errors",
    "NonRetryable": "solo_os.errors",
    "RateLimited": "solo_os.errors",
    "RetryAfter": "solo_os.errors",
    "SignatureError": "solo_os.errors",
    "SoloOSError": "solo_os.errors",
    "StoreError": "solo_os.errors",
    "Retry": "solo_os.core.retry",
    "CancelOn": "solo_os.core.workflow",
    "InvokeError": "solo_os.errors",
    **dict.fromkeys(
        ("Batch", "Concurrency", "Debounce", "RateLimit", "Singleton", "Throttle"), "solo_os.core.flow"
    ),
}


def __getattr__(name: str) -> Any:
    if name == "sources":
        value: Any = importlib.import_module("solo_os.sources")
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:
        raise AttributeError(f"module 'solo_os' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
