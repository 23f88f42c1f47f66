"""Slow clients cannot hold the ingress (issue 14): a real ``solo-os serve``, real sockets.

200 connections send their request head one byte a second (slowloris) while normal signed
deliveries go on: the normal ones keep their latency (within a second of it), the slow ones
are answered 408 and closed once ``SOLO_OS_HEADER_TIMEOUT`` has passed. A body sent as slowly
is cut at ``SOLO_OS_BODY_TIMEOUT``; connections beyond ``SOLO_OS_MAX_CONNECTIONS`` are
answered 503 at once; the closures are logged.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.chaos import _support

APP = str(Path(__file__).resolve().parents[1] / "apps" / "crash_app.py")
HEADER_TIMEOUT = 2.0
SLOW = 200
CAP = 260


async def _slowloris(
    port: int, opened: list[float], closed: list[tuple[float, float, float, bytes]]
) -> None:
    """Send a request head one byte a second until the server closes the connection."""
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t1 = time.monotonic()
    opened.append(t1)
    head = b"POST /webhooks/billing HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 200
    answer = b""
    try:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                chunk = await asyncio.wait_for(reader.read(1024), 1.0)
            except TimeoutError:
                continue
            answer += chunk
            if not chunk:
                break
        while chunk := await asyncio.wait_for(reader.read(1024), 5.0):
            answer += chunk
    except (ConnectionError, TimeoutError):
        pass
    finally:
        closed.append((t0, t1, time.monotonic(), answer))
        writer.close()


async def _slow_second_request(port: int) -> tuple[float, bytes, bytes]:
    """A kept-alive connection: one quick request, then a second one sent a byte a second.
    Returns how long the second one was given, the first answer and the second."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b'"ok"}'), 10)
    t0 = time.monotonic()
    second = b""
    try:
        for byte in b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            if await _closed_within(reader, 1.0):
                break
        second = await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - t0, first, second


async def _deliver(client: httpx.AsyncClient, base: str, n: int, tag: str) -> list[float]:
    latencies = []
    for i in range(n):
        t0 = time.monotonic()
        r = await _support.post(client, base, f"{tag}-{i}", {"i": i}, event_type="healthy")
        latencies.append(time.monotonic() - t0)
        assert r.status_code == 200, r.text
    return latencies


async def test_slow_clients_are_cut_off_and_do_not_delay_normal_ones(
    database_url: str, tmp_path: Path
) -> None:
    env = _support.env_for(
        database_url,
        SOLO_OS_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        SOLO_OS_BODY_TIMEOUT="2",
        SOLO_OS_MAX_CONNECTIONS=str(CAP),
    )
    with _support.processes(tmp_path) as procs:
        _, base = procs.serve(APP, env)
        port = int(base.rsplit(":", 1)[1])
        async with httpx.AsyncClient(timeout=30) as client:
            await _deliver(client, base, 3, "warm")
            before = await _deliver(client, base, 10, "before")

            opened: list[float] = []
            closed: list[tuple[float, float, float, bytes]] = []
            slow = [asyncio.create_task(_slowloris(port, opened, closed)) for _ in range(SLOW)]
            kept_alive = asyncio.create_task(_slow_second_request(port))
            while len(opened) < SLOW:
                await asyncio.sleep(0.05)
            during = await _deliver(client, base, 10, "during")
            await asyncio.wait_for(asyncio.gather(*slow), 30)
            second_took, first_answer, _ = await asyncio.wait_for(kept_alive, 30)

            # A body that trickles in is cut at the body timeout.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /webhooks/billing HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n")
            t0 = time.monotonic()
            for _ in range(10):
                writer.write(b"{")
                await writer.drain()
                if await _closed_within(reader, 1.0):
                    break
            body_cut = time.monotonic() - t0
            writer.close()

            # Beyond the connection cap, one more connection is refused at once.
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CAP + 5)]
            refused = 0
            for r, _ in idle:
                with_data = await _read_now(r)
                refused += with_data.startswith(b"HTTP/1.1 503")
            for _, w in idle:
                w.close()
            after = await _deliver(client, base, 5, "after")
        logs = procs.logs()

    print(
        f"latency before {max(before):.3f}s, beside {SLOW} slow clients {max(during):.3f}s, "
        f"after {max(after):.3f}s; slow ones closed after "
        f"{min(e - t for t, _, e, _ in closed):.2f}-{max(e - t for _, t, e, _ in closed):.2f}s"
    )
    assert len(closed) == SLOW
    # The server's clock starts between connect() and its return: closed no earlier than the
    # timeout after the first, and not much later than the timeout after the second.
    assert min(end - t0 for t0, _, end, _ in closed) >= HEADER_TIMEOUT - 0.05
    assert max(end - t1 for _, t1, end, _ in closed) <= HEADER_TIMEOUT + 2.0
    assert all(answer.startswith(b"HTTP/1.1 408") for *_, answer in closed), closed[:3]
    assert max(during) <= max(before) + 1.0, (before, during)
    assert body_cut <= 2.0 + 1.5, body_cut
    # A later request on a kept-alive connection gets the same header deadline.
    assert first_answer.startswith(b"HTTP/1.1 200")
    assert HEADER_TIMEOUT - 0.1 <= second_took <= HEADER_TIMEOUT + 2.0, second_took
    assert refused >= 5, refused
    assert max(after) <= max(before) + 1.0, (before, after)
    assert "http.connections_closed" in logs


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1024), seconds) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def _read_now(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(1024), 0.5)
    except (TimeoutError, ConnectionError):
        return b""
