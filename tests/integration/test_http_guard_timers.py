"""The guarded protocol's deadlines on one timer per connection (issue 21): requests on a
kept-alive connection make no timer of their own, and every deadline still holds on time,
also where a phase's deadline comes before the timer that is armed (real uvicorn, real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from solo_os import config
from solo_os.runtime import httpserver


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _server(header: float, body: float) -> AsyncIterator[int]:
    settings = config.Settings(SOLO_OS_HEADER_TIMEOUT=header, SOLO_OS_BODY_TIMEOUT=body)
    port = _port()
    cfg = uvicorn.Config(_app, host="127.0.0.1", port=port, http=httpserver.protocol_for(settings),
                         lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(cfg)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


REQUEST = b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi"


async def _answer(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\nok"), 5)


async def test_kept_alive_requests_make_no_timer_of_their_own() -> None:
    loop = asyncio.get_running_loop()
    made: list[Any] = []
    call_at, call_later = loop.call_at, loop.call_later

    def guard(cb: Any) -> None:  # the guard's own timers, not uvicorn's keep-alive one
        if getattr(cb, "__name__", "") in ("_check", "_expired"):
            made.append(cb)

    def counted_at(when: float, cb: Any, *args: Any, **kw: Any) -> Any:
        guard(cb)
        return call_at(when, cb, *args, **kw)

    def counted_later(delay: float, cb: Any, *args: Any, **kw: Any) -> Any:
        guard(cb)
        return call_later(delay, cb, *args, **kw)

    setattr(loop, "call_at", counted_at)  # noqa: B010 - counting the loop's timers
    setattr(loop, "call_later", counted_later)  # noqa: B010
    try:
        async with _server(header=10, body=30) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(20):
                writer.write(REQUEST)
                assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
            writer.close()
    finally:
        del loop.call_at, loop.call_later
    assert 1 <= len(made) <= 2  # the connection's timer; it made two per request before


async def _cut_after(port: int, first: bytes, slow: bytes, quick: bytes = b"") -> tuple[float, bytes]:
    """Send ``first`` (whole requests), then ``quick`` at once and ``slow`` a byte every 50 ms;
    the seconds from ``quick`` until the server closed the connection, and what it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if first:
        writer.write(first)
        for _ in range(first.count(b"POST")):
            await _answer(reader)
    start = time.monotonic()
    writer.write(quick)
    answer = b""
    for byte in slow:
        writer.write(bytes([byte]))
        with contextlib.suppress(TimeoutError):
            chunk = await asyncio.wait_for(reader.read(1024), 0.05)
            answer += chunk
            if not chunk:
                break
    writer.close()
    return time.monotonic() - start, answer


SLOW_HEAD = b"POST /x HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 200


async def test_a_slow_head_after_a_quick_request_is_cut_at_the_header_timeout() -> None:
    async with _server(header=0.5, body=5) as port:
        took, answer = await _cut_after(port, REQUEST * 3, SLOW_HEAD)
    assert answer.startswith(b"HTTP/1.1 408")
    assert 0.45 <= took <= 1.0


async def test_a_body_deadline_before_the_armed_timer_still_holds() -> None:
    """body timeout < header timeout: the body's deadline comes before the armed timer."""
    async with _server(header=5, body=0.4) as port:
        head = b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n"
        took, answer = await _cut_after(port, REQUEST, b"b" * 400, quick=head)
    assert answer == b""  # the body timeout closes without an answer
    assert 0.35 <= took <= 1.0
