"""The webhook route's shortcuts (issue 21) answer exactly as the general pieces they stand for:
headers indexed once read as Starlette's ``Headers``, the stored-header verdicts cached per
``keep``, retry policies cached per handler and defaults, UUIDv7s made without ``UUID.__init__``."""

from __future__ import annotations

import pickle
import uuid

import pytest
from starlette.datastructures import Headers

from solo_os import App, Retry, config, sources
from solo_os.core import ids
from solo_os.sources import DictHeaders
from solo_os.sources._headers import WireHeaders

RAW = [
    (b"host", b"example.test"),
    (b"content-type", b"application/json"),
    (b"x-event-type", b"invoice.paid"),
    (b"x-dup", b"first"),
    (b"x-dup", b"second"),
    (b"x-latin", "caf\u00e9".encode("latin-1")),
    (b"x-empty", b""),
]


@pytest.mark.parametrize(
    "name", ["host", "Content-Type", "X-DUP", "x-dup", "x-latin", "x-empty", "missing", "HOST"]
)
def test_wire_headers_read_as_starlette_headers(name: str) -> None:
    ours, theirs = WireHeaders(RAW), Headers(raw=RAW)
    assert ours.getlist(name) == theirs.getlist(name)
    assert ours.get(name) == theirs.get(name)
    assert ours.get(name, "fallback") == theirs.get(name, "fallback")
    assert ours.items() == list(theirs.items())


def test_wire_headers_getlist_is_a_copy() -> None:
    h = WireHeaders(RAW)
    h.getlist("x-dup").append("third")
    assert h.getlist("x-dup") == ["first", "second"]


def _github() -> sources.Source:
    s = sources.github(secret_env="GH_SECRET")
    assert s.bind("gh", {"GH_SECRET": "s3cret"}) == []
    return s


def test_stored_headers_verdicts_follow_keep() -> None:
    """Each ``keep`` gets its own verdicts: a header kept for one is not kept for another."""
    s = _github()
    h = DictHeaders({"X-Api-Key": "k", "X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=x"})
    plain = {"x-github-event": "push"}
    assert s.stored_headers(h) == plain
    keep = frozenset({"x-api-key"})
    assert s.stored_headers(h, keep) == {"x-api-key": "k", "x-github-event": "push"}
    assert s.stored_headers(h, keep) == {"x-api-key": "k", "x-github-event": "push"}
    assert s.stored_headers(h) == plain
    # A signature header is never kept, not even when asked for, cached or not.
    assert "x-hub-signature-256" not in s.stored_headers(h, frozenset({"x-hub-signature-256"}))


def test_stored_headers_verdicts_are_bounded() -> None:
    s = _github()
    for i in range(3000):
        assert s.stored_headers(DictHeaders({f"x-token-{i}": "t", f"x-n-{i}": "v"})) == {f"x-n-{i}": "v"}
    cache = s._verdicts
    assert cache is not None and len(cache[1]) <= 1024


def test_policy_follows_the_app_defaults() -> None:
    app = App(service="t", settings=config.Settings(MAX_RETRY_ATTEMPTS=4))

    @app.on("internal", "x")
    def h(event: object) -> None: ...

    @app.on("internal", "y", retry=Retry(max_attempts=9))
    def k(event: object) -> None: ...

    first = app.policy(app.handlers["h"])
    assert first.max_attempts == 4
    assert app.policy(app.handlers["h"]) is first  # worked out once
    assert app.policy(app.handlers["k"]).max_attempts == 9
    app._settings = config.Settings(MAX_RETRY_ATTEMPTS=6)
    assert app.policy(app.handlers["h"]).max_attempts == 6


def test_uuid7_is_a_plain_uuid() -> None:
    made = [ids.uuid7() for _ in range(2000)]
    assert made == sorted(made)  # monotonic within the process
    for u in made[:50]:
        same = uuid.UUID(str(u))
        assert type(u) is uuid.UUID
        assert u == same and hash(u) == hash(same) and u.int == same.int
        assert u.version == 7 and u.variant == uuid.RFC_4122
        assert u.is_safe is uuid.SafeUUID.unknown
        assert pickle.loads(pickle.dumps(u)) == u  # noqa: S301 - our own bytes
        with pytest.raises(TypeError):
            u.int = 0  # type: ignore[misc]
