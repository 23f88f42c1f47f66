"""One error root for solo-os, and the control-flow exceptions handlers raise."""

from __future__ import annotations


class SoloOSError(Exception):
    """Root of every error solo-os raises on purpose."""


class ConfigError(SoloOSError):
    """The configuration or the user's app is invalid; the message lists every problem."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(SoloOSError):
    """The store failed; raised ``from`` the driver's error."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now; the caller may try again later (HTTP 503)."""


class StoreUnreachable(StoreUnavailable):
    """A process could not reach the store at start within ``SOLO_OS_DB_CONNECT_TIMEOUT``."""


class SignatureError(SoloOSError):
    """A delivery's signature is missing, malformed, wrong or stale.

    ``reason`` is a short machine-readable word for logs and metrics; it never carries
    the body, a header value or a secret.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class PayloadError(SoloOSError):
    """A verified delivery is not JSON, or fails its schema; ``details`` says why."""

    def __init__(self, details: list[dict[str, object]]) -> None:
        self.details = details
        super().__init__(f"invalid payload ({len(details)} error(s))")


class NonRetryable(SoloOSError):
    """Raised by a handler: this failure will not go away; dead-letter at once."""


class RetryAfter(SoloOSError):
    """Raised by a handler: try again after ``seconds``; not a crash, logged as a deferral."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        if not seconds >= 0:
            raise ValueError("RetryAfter seconds must be >= 0")
        self.seconds = float(seconds)
        self.reason = reason
        super().__init__(reason or f"retry after {self.seconds:g}s")


class StepError(NonRetryable):
    """A durable step is misused (name repeated, result not JSON): retrying cannot fix it."""


class RateLimited(RetryAfter):
    """Raised by ``ctx.http`` when no rate-limit token comes free within its bounded wait.

    No request was sent: the worker puts the execution back to ``pending`` for ``seconds``
    and gives the attempt back (it does not count against ``max_attempts``).
    """

    def __init__(self, seconds: float, key: str) -> None:
        self.key = key
        super().__init__(seconds, f"rate limit {key!r}: no token free, retry in {seconds:.3g}s")


class InvokeError(SoloOSError):
    """``ctx.invoke``: the child execution ended ``dead`` or ``cancelled``, or its timeout passed
    (``status`` says which: ``dead``, ``cancelled``, ``timed_out``)."""

    def __init__(self, message: str, *, status: str, child_id: object = None) -> None:
        self.status = status
        self.child_id = child_id
        super().__init__(message)
