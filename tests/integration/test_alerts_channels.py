"""Alert channels delivered by libraries (issue 20, item 6): an Apprise URL (here Apprise's
JSON service, to a local HTTP server that fails first) and email through aiosmtplib with
STARTTLS and a login, to a local aiosmtpd server with its own certificate authority."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from structlog.testing import capture_logs

from solo_os import App, ConfigError, Context, NonRetryable, alerts, sources
from solo_os.store import _alerts as outbox
from tests import helpers

TOKEN = "apprise-path-token-XYZ987"


@pytest.fixture
def json_server() -> Iterator[list[dict[str, Any]]]:
    """Records every POST; answers 500 to the first, 200 to the rest."""
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                seen.append({"path": self.path, "body": body})
                status = 500 if len(seen) == 1 else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    seen.append({"port": server.server_address[1]})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def _dying_app(*channels: alerts.Channel) -> App:
    app = App(service="shop")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "invoice.paid")
    async def fulfil(event: dict[str, Any], ctx: Context) -> None:
        raise NonRetryable("card declined")

    app.alerts(*channels, group_wait=dt.timedelta(0))
    return app


async def test_an_apprise_channel_delivers_through_apprise_and_is_retried(
    database_url: str, json_server: list[dict[str, Any]]
) -> None:
    port = json_server.pop(0)["port"]
    url = f"json://127.0.0.1:{port}/alerts/{TOKEN}"
    app = _dying_app(alerts.apprise(url_env="OPS_APPRISE_URL", name="ops"))
    env = {"BILLING_WEBHOOK_SECRET": helpers.SECRET, "OPS_APPRISE_URL": url}
    with capture_logs() as logs:
        async with helpers.running(app, database_url, env=env) as h:
            assert (await h.post("billing", {"n": 1}, key="a1")).status_code == 200

            async def sent() -> bool:
                return any(a.deliveries.get("ops") == "sent" for a in await h.store.list_alerts())

            await helpers.eventually(sent, timeout=30, interval=0.1)
            [alert] = await h.store.list_alerts()
    posts = [r for r in json_server if r["path"] == f"/alerts/{TOKEN}"]
    assert len(posts) == 2  # refused once, retried by the outbox, then taken
    body = json.loads(posts[1]["body"])
    assert body["title"] == "[shop] An execution of fulfil went dead"
    assert "card declined" in body["message"] and "solo-os dlq list --handler fulfil" in body["message"]
    assert body["type"] == "failure"
    assert alert.kind == "dead" and alert.total == 1
    retrying = [e for e in logs if e["event"] == "alert.retrying"]
    assert retrying and retrying[0]["error"] == "apprise: not delivered (failure)"
    assert TOKEN not in json.dumps(logs, default=str)


def test_an_apprise_channel_needs_one_url_apprise_knows() -> None:
    def problems(value: str) -> list[str]:
        return alerts.apprise(url_env="OPS_URL", name="ops").bind({"OPS_URL": value})

    assert problems("ntfys://my-topic") == []
    assert problems("discord://1234/abcdefghijklmnop") == []
    assert problems("nosuchservice://x") == [
        "alert channel 'ops': OPS_URL is not a URL Apprise can send to"
    ]
    assert problems("ntfys://a ntfys://b") == ["alert channel 'ops': OPS_URL must hold one Apprise URL"]
    assert problems("") == ["alert channel 'ops': environment variable OPS_URL is not set"]
    app = App()
    app.alerts(alerts.apprise(url_env="OPS_URL", name="ops"))
    with pytest.raises(ConfigError, match="OPS_URL is not a URL Apprise"):
        app.prepare({"OPS_URL": "nosuchservice://secret-value"})
    assert "secret-value" not in repr(alerts.apprise(url_env="OPS_URL"))


# --- email through aiosmtplib: STARTTLS and a login ---------------------------------------------


def _certificate_authority(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1 and the file of the CA that signed it."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "solo-os test CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
                       critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, ca_file


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins: list[tuple[str, bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        assert session.ssl is not None  # only ever over TLS
        self.messages.append(envelope.content)
        return "250 OK"


async def test_email_goes_through_aiosmtplib_with_starttls_and_a_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, ca_file = _certificate_authority(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the default context trusts our test CA
    mailbox = _Mailbox()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"ops", b"mail-pass-123")
        mailbox.logins.append((data.login.decode() if isinstance(data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)  # the server answers 535 itself

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
        authenticator=authenticate, auth_require_tls=True, auth_exclude_mechanism=["LOGIN"],
    )
    controller.start()
    try:
        def channel(password: str) -> alerts.Email:
            ch = alerts.email(to=["ops@example.com"], sender="shop@example.com", host="127.0.0.1",
                              port=port, username_env="SMTP_USER", password_env="SMTP_PASS", timeout=10)
            assert ch.bind({"SMTP_USER": "ops", "SMTP_PASS": password}) == []
            return ch

        now = dt.datetime.now(dt.UTC)
        message = alerts.render(
            outbox.Alert(
                id=uuid.uuid4(), key="dead:fulfil", kind="dead", subject="fulfil", total=1,
                first_at=now, last_at=now, not_before=now, closed_at=now,
                samples=[{"execution_id": "x1", "correlation_id": "c1", "attempts": 1, "error": "boom"}],
            ),
            "shop",
        )
        async with httpx.AsyncClient() as client:
            await channel("mail-pass-123").send(message, client)
            with pytest.raises(alerts.DeliveryError, match="SMTPAuthenticationError: 535"):
                await channel("wrong").send(message, client)
    finally:
        controller.stop()
    assert mailbox.logins == [("ops", True), ("ops", False)]
    [raw] = mailbox.messages
    mail = message_from_bytes(raw)
    assert mail["Subject"] == "[shop] An execution of fulfil went dead" and mail["To"] == "ops@example.com"
    assert mail["X-Solo-OS-Alert"] == "dead:fulfil"
