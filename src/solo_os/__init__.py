"""solo-os: verified, deduplicated webhooks and idempotent handlers, in one Python file."""

from solo_os import sources
from solo_os.app import App
from solo_os.context import Context
from solo_os.errors import (
    ConfigError,
    NonRetryable,
    RateLimited,
    RetryAfter,
    SignatureError,
    SoloOSError,
    StoreError,
)
from solo_os.retry import Retry

__version__ = "0.1.0"

__all__ = [
    "App",
    "ConfigError",
    "Context",
    "NonRetryable",
    "RateLimited",
    "Retry",
    "RetryAfter",
    "SignatureError",
    "SoloOSError",
    "StoreError",
    "sources",
]
