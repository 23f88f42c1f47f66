"""Alerts: channels (Slack, a JSON webhook, email, any Apprise URL) and the messages. The
delivery loop is ``solo_os.runtime.alerter``.

Declare them once::

    from solo_os import alerts
    app.alerts(alerts.slack(url_env="SLACK_WEBHOOK_URL"), alerts.email(to=["me@example.com"]))
    app.alerts(alerts.apprise(url_env="DISCORD_ALERTS_URL", name="discord"))  # 100+ services

What raises an alert is recorded durably in the store's outbox (``store/_alerts.py``): an
execution that went dead (found by a scan of the executions table, so a crash right after the
death cannot lose it), a schedule failing ``alert_after_failures`` times in a row, a schedule
that missed its fires, and its recovery. The ``Alerter`` (``solo_os.runtime.alerter``, in every
worker and scheduler process) closes alerts whose gathering time is over and delivers them,
one claim per delivery (``FOR UPDATE SKIP LOCKED``), retrying with exponential backoff for up to three days.
Delivery itself is done by libraries where one fits: ``apprise`` for the services it knows,
``aiosmtplib`` for email; Slack and the signed JSON webhook are a few lines over ``httpx``
(see docs/concepts.md).

Secrets: a channel's URL and password are read from environment variables by name and are
never logged, stored or put into a message; error texts pass through the log redactor.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import ssl
import time
import warnings
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import structlog

from solo_os import errors
from solo_os.core import alert_text
from solo_os.core.alert_text import Message as Message
from solo_os.observability import logs as slog

if TYPE_CHECKING:  # loaded where alerts are delivered, not by every app file that declares them
    import httpx

    from solo_os.store import _alerts as outbox

log = structlog.get_logger("solo_os.alerts")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


# --- messages ----------------------------------------------------------------------------------


def clean(value: Any) -> Any:
    """Known secrets out of a value headed for a channel (the log redactor's rules)."""
    return slog.redactor(None, "", {"value": value})["value"]


def render(alert: outbox.Alert, service: str) -> Message:
    """The message for a closed alert (pure; ``core/alert_text.py``), secrets cleaned out."""
    return alert_text.render(alert, service, scrub=clean)


# --- channels ---------------------------------------------------------------------------------


class DeliveryError(errors.SoloOSError):
    """A channel did not take an alert; the outbox retries it later."""


class Channel:
    """Base of the alert channels: a name, secrets resolved from the environment, ``send``."""

    kind: ClassVar[str] = "channel"

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _CHANNEL_NAME.match(name):
            raise errors.ConfigError(
                f"alert channel name {name!r}: use letters, digits, '-', '_' or '.'"
            )
        self.name = name
        self._secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never the URL or password
        return f"<alerts.{self.kind} {self.name!r}>"

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def bind(self, env: Mapping[str, str]) -> list[str]:
        """Resolve secrets from ``env``; the problems, each naming a variable, never a value."""
        return []

    async def send(self, message: Message, client: httpx.AsyncClient) -> None:
        raise NotImplementedError


def _env_name(value: str | None, what: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not _ENV_NAME.match(value)):
        raise errors.ConfigError(f"{what}={value!r} is not an environment variable name")
    return value


def _url_env(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise errors.ConfigError(f"{what}={value!r} is not an environment variable name")
    return value


def _require(env: Mapping[str, str], name: str, channel: str) -> tuple[str | None, list[str]]:
    value = (env.get(name) or "").strip()
    if not value:
        return None, [f"alert channel {channel!r}: environment variable {name} is not set"]
    return value, []


async def _post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> None:
    import httpx

    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}") from None
    if response.status_code >= 300:
        raise DeliveryError(f"HTTP {response.status_code}")


class Slack(Channel):
    """A Slack incoming webhook (``https://hooks.slack.com/services/...``, a secret)."""

    kind = "slack"

    def __init__(self, url_env: str, name: str) -> None:
        super().__init__(name)
        self.url_env = _url_env(url_env, "alerts.slack: url_env")
        self._url: str | None = None

    def bind(self, env: Mapping[str, str]) -> list[str]:
        self._url, problems = _require(env, self.url_env, self.name)
        if self._url and not self._url.startswith(("https://", "http://")):
            return [f"alert channel {self.name!r}: {self.url_env} is not an http(s) URL"]
        self._secrets = (self._url,) if self._url else ()
        return problems

    async def send(self, message: Message, client: httpx.AsyncClient) -> None:
        if self._url is None:
            raise DeliveryError(f"{self.url_env} is not set")
        body = {
            "text": f"{message.title}\n{message.text}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": message.text[:2900]}},
            ],
        }
        await _post(client, self._url, json.dumps(body).encode(), {"content-type": "application/json"})


class Webhook(Channel):
    """A generic JSON webhook: ``POST`` of ``Message.as_json()``; optionally HMAC-signed."""

    kind = "webhook"
    SIGNATURE_HEADER = "x-solo-os-signature"

    def __init__(self, url_env: str, secret_env: str | None, name: str) -> None:
        super().__init__(name)
        self.url_env = _url_env(url_env, "alerts.webhook: url_env")
        self.secret_env = _env_name(secret_env, "alerts.webhook: secret_env")
        self._url: str | None = None
        self._secret: str | None = None

    def bind(self, env: Mapping[str, str]) -> list[str]:
        self._url, problems = _require(env, self.url_env, self.name)
        if self._url and not self._url.startswith(("https://", "http://")):
            problems.append(f"alert channel {self.name!r}: {self.url_env} is not an http(s) URL")
        if self.secret_env:
            self._secret, more = _require(env, self.secret_env, self.name)
            problems.extend(more)
        self._secrets = tuple(s for s in (self._url, self._secret) if s)
        return problems

    async def send(self, message: Message, client: httpx.AsyncClient) -> None:
        if self._url is None:
            raise DeliveryError(f"{self.url_env} is not set")
        body = json.dumps(message.as_json()).encode()
        headers = {"content-type": "application/json", "user-agent": "solo-os-alerts"}
        if self._secret:
            ts = str(int(time.time()))
            mac = hmac.new(self._secret.encode(), f"{ts}.".encode() + body, hashlib.sha256)
            headers[self.SIGNATURE_HEADER] = f"t={ts},v1={mac.hexdigest()}"
        await _post(client, self._url, body, headers)


Security = Literal["starttls", "ssl", "none"]


class Email(Channel):
    """Email over SMTP with ``aiosmtplib`` (asynchronous: no thread per message)."""

    kind = "email"

    def __init__(
        self,
        *,
        to: Sequence[str],
        sender: str,
        host: str,
        port: int | None,
        username_env: str | None,
        password_env: str | None,
        security: Security,
        timeout: float,
        name: str,
    ) -> None:
        super().__init__(name)
        recipients = [to] if isinstance(to, str) else list(to)
        if not recipients or not all(isinstance(r, str) and _EMAIL.match(r) for r in recipients):
            raise errors.ConfigError(f"alerts.email: to= needs email addresses, got {to!r}")
        if not isinstance(sender, str) or not _EMAIL.match(sender):
            raise errors.ConfigError(f"alerts.email: sender= {sender!r} is not an email address")
        if security not in ("starttls", "ssl", "none"):
            raise errors.ConfigError("alerts.email: security= must be 'starttls', 'ssl' or 'none'")
        if not isinstance(host, str) or not host:
            raise errors.ConfigError("alerts.email: host= is required")
        if not timeout > 0:
            raise errors.ConfigError("alerts.email: timeout= must be positive")
        self.to = recipients
        self.sender = sender
        self.host = host
        self.port = port if port is not None else {"ssl": 465, "starttls": 587, "none": 25}[security]
        self.security = security
        self.timeout = float(timeout)
        self.username_env = _env_name(username_env, "alerts.email: username_env")
        self.password_env = _env_name(password_env, "alerts.email: password_env")
        if (self.username_env is None) != (self.password_env is None):
            raise errors.ConfigError("alerts.email: give both username_env and password_env, or neither")
        self._login: tuple[str, str] | None = None

    def bind(self, env: Mapping[str, str]) -> list[str]:
        if self.username_env is None or self.password_env is None:
            return []
        user, problems = _require(env, self.username_env, self.name)
        password, more = _require(env, self.password_env, self.name)
        problems.extend(more)
        self._login = (user, password) if user and password else None
        self._secrets = (password,) if password else ()
        return problems

    async def send(self, message: Message, client: httpx.AsyncClient) -> None:
        mail = EmailMessage()
        mail["Subject"] = message.title.replace("\n", " ")[:200]
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.to)
        mail["X-Solo-OS-Alert"] = message.key
        mail.set_content(message.text + "\n")
        import aiosmtplib  # loaded when mail is sent, not for every command line

        user, password = self._login if self._login is not None else (None, None)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.host,
                port=self.port,
                username=user,
                password=password,
                use_tls=self.security == "ssl",
                start_tls=self.security == "starttls",
                tls_context=ssl.create_default_context(),
                timeout=self.timeout,
            )
        except (OSError, aiosmtplib.SMTPException) as exc:
            raise DeliveryError(_smtp_error(exc)) from None


def _smtp_error(exc: BaseException) -> str:
    code = getattr(exc, "code", None)  # aiosmtplib's SMTPResponseException: the server's reply
    if isinstance(code, int) and code > 0:
        return f"{type(exc).__name__}: {code}"
    return type(exc).__name__


_NOTIFY_TYPES = {"dead": "failure", "schedule_failing": "failure", "schedule_recovered": "success"}


class Apprise(Channel):
    """Any service ``apprise`` knows (Discord, Teams, Telegram, PagerDuty, ntfy, ...).

    One Apprise URL per channel, read from ``url_env`` (it usually carries a token, so it is
    a secret): a retry then goes only to the service that failed. Apprise sends the message;
    the outbox decides when, gathers, deduplicates and retries, as for every channel.
    """

    kind = "apprise"

    def __init__(self, url_env: str, name: str) -> None:
        super().__init__(name)
        self.url_env = _url_env(url_env, "alerts.apprise: url_env")
        self._notifier: Any = None

    def bind(self, env: Mapping[str, str]) -> list[str]:
        url, problems = _require(env, self.url_env, self.name)
        self._notifier = None
        self._secrets = (url,) if url else ()
        if url is None:
            return problems
        if any(c.isspace() for c in url) or "," in url:
            return [f"alert channel {self.name!r}: {self.url_env} must hold one Apprise URL"]
        notifier = _apprise_lib().Apprise()
        if not notifier.add(url):
            return [f"alert channel {self.name!r}: {self.url_env} is not a URL Apprise can send to"]
        self._notifier = notifier
        return []

    async def send(self, message: Message, client: httpx.AsyncClient) -> None:
        if self._notifier is None:
            raise DeliveryError(f"{self.url_env} is not set")
        lib = _apprise_lib()
        result = await self._notifier.async_notify(
            body=message.text,
            title=message.title,
            body_format=lib.NotifyFormat.TEXT,
            notify_type=_NOTIFY_TYPES.get(message.kind, "warning"),
        )
        if not result:
            status = getattr(getattr(result, "status", None), "name", None)
            raise DeliveryError(f"apprise: not delivered ({str(status).lower()})")


_apprise_ready = False


def _apprise_lib() -> Any:
    """``apprise``, imported when a channel needs it (it loads ~190 plugins: not for --help)."""
    global _apprise_ready
    import apprise as apprise_lib

    if not _apprise_ready:
        # Apprise logs each service's full URL, token included, at debug level.
        if logging.getLogger("apprise").getEffectiveLevel() < logging.WARNING:
            logging.getLogger("apprise").setLevel(logging.WARNING)
        # Its plugins load on first use; some import modules that are deprecated in this
        # Python (imghdr, for PGP email): their warnings are Apprise's business, not the app's.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            apprise_lib.Apprise().add("json://localhost")
        _apprise_ready = True
    return apprise_lib


def slack(url_env: str = "SLACK_WEBHOOK_URL", *, name: str = "slack") -> Slack:
    """A Slack incoming webhook; its URL (a secret) is read from ``url_env``."""
    return Slack(url_env, name)


def apprise(url_env: str = "ALERT_APPRISE_URL", *, name: str = "apprise") -> Apprise:
    """Any service Apprise supports; the Apprise URL (a secret) is read from ``url_env``,
    e.g. ``discord://webhook_id/token`` or ``ntfys://topic`` (https://github.com/caronc/apprise/wiki)."""
    return Apprise(url_env, name)


def webhook(
    url_env: str = "ALERT_WEBHOOK_URL", *, secret_env: str | None = None, name: str = "webhook"
) -> Webhook:
    """A JSON ``POST`` to the URL in ``url_env``. With ``secret_env`` each request carries
    ``X-Solo-OS-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>``."""
    return Webhook(url_env, secret_env, name)


def email(
    *,
    to: Sequence[str] | str,
    sender: str = "solo-os@localhost",
    host: str = "localhost",
    port: int | None = None,
    username_env: str | None = None,
    password_env: str | None = None,
    security: Security = "starttls",
    timeout: float = 30.0,
    name: str = "email",
) -> Email:
    """Email through an SMTP server (``security``: ``starttls``, ``ssl`` or ``none``)."""
    return Email(
        to=[to] if isinstance(to, str) else to, sender=sender, host=host, port=port,
        username_env=username_env, password_env=password_env, security=security,
        timeout=timeout, name=name,
    )
