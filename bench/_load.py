"""The load generator: signed webhook deliveries over real HTTP/1.1, from its own process.

    python bench/_load.py closed --url URL --requests N --concurrency C [--dup 0.1]
    python bench/_load.py open   --url URL --rate R --duration S [--dup 0.1]

``closed``: C keep-alive connections each send their next request as soon as the previous
answer arrives (throughput). ``open``: requests are due at a fixed rate whatever the server
does; latency counts from the moment a request was due, so a stalled server shows up in the
figures instead of silently slowing the client (no coordinated omission).

Every request is signed (HMAC-SHA256, the ``sources.hmac`` scheme) and built before the clock
starts. A share ``--dup`` of the requests repeats an earlier delivery byte for byte (same key,
same body), as a provider's retry would. Prints one JSON report on stdout.

Plain asyncio streams (uvloop when present) rather than httpx: a Python HTTP client library
costs several times the CPU per request, and on a small machine the client's CPU is taken
from the server being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import random
import resource
import sys
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

RETRIES = [0]  # reused connections found closed by the server, retried on a fresh one


def build_requests(
    url: str, n: int, dup: float, secret: str, event_type: str, seed: int, key_prefix: str
) -> tuple[list[bytes], list[str]]:
    parts = urlsplit(url)
    host = parts.netloc
    path = parts.path or "/"
    rng = random.Random(seed)
    originals: list[tuple[bytes, str]] = []
    out: list[bytes] = []
    keys: list[str] = []
    for i in range(n):
        if originals and rng.random() < dup:
            raw, key = originals[rng.randrange(len(originals))]
        else:
            key = f"{key_prefix}-{i}"
            body = json.dumps(
                {
                    "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "customer_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "amount_cents": 4900 + i % 1000,
                    "currency": "EUR",
                    "paid_at": "2026-11-23T10:00:00Z",
                    "metadata": {"order": i, "plan": "pro"},
                },
                separators=(",", ":"),
            ).encode()
            sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nx-signature: {sig}\r\n"
                f"x-event-type: {event_type}\r\nx-idempotency-key: {key}\r\n\r\n"
            ).encode()
            raw = head + body
            originals.append((raw, key))
        out.append(raw)
        keys.append(key)
    return out, keys


class Conn:
    """One keep-alive HTTP/1.1 connection.

    Like any HTTP client, it does not reuse a connection that sat idle longer than the
    server's keep-alive timeout (uvicorn's default is 5 s), and it retries once on a fresh
    connection when a reused one turns out closed before any answer came (``retries``).
    """

    IDLE_LIMIT = 3.0

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0
        self.retries = 0

    async def request(self, raw: bytes) -> int:
        reused = self.writer is not None
        if reused and time.monotonic() - self.last_used > self.IDLE_LIMIT:
            self.close()
            reused = False
        status = await self._once(raw)
        if status < 0 and reused:
            self.retries += 1
            status = await self._once(raw)
        self.last_used = time.monotonic()
        return max(status, 0)

    async def _once(self, raw: bytes) -> int:
        """The status; -1 when the connection failed before any answer, 0 after part of one."""
        got_head = False
        try:
            if self.writer is None or self.writer.is_closing():
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            self.writer.write(raw)
            head = await self.reader.readuntil(b"\r\n\r\n")
            got_head = True
            status = int(head[9:12])
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                lname = name.strip().lower()
                if lname == b"content-length":
                    length = int(value.strip())
                elif lname == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length:
                await self.reader.readexactly(length)
            if close:
                self.close()
            return status
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            return 0 if got_head else -1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None
        self.reader = None


def report(
    mode: str, keys: list[str], statuses: list[int], latencies: list[float], elapsed: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    lat = sorted(latencies)

    def pct(q: float) -> float:
        if not lat:
            return float("nan")
        return round(lat[min(len(lat) - 1, int(q / 100 * len(lat)))] * 1000, 3)

    ok_keys = {k for k, s in zip(keys, statuses, strict=True) if 200 <= s < 300}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "mode": mode,
        "requests": len(statuses),
        "elapsed_s": round(elapsed, 3),
        "rate_per_s": round(len(statuses) / elapsed, 1) if elapsed else None,
        "status": {str(k): v for k, v in sorted(Counter(statuses).items())},
        "distinct_keys": len(set(keys)),
        "distinct_keys_2xx": len(ok_keys),
        "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "p999": pct(99.9),
                       "max": round(lat[-1] * 1000, 3) if lat else None},
        "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "client_retries": RETRIES[0],
        **extra,
    }


async def closed(args: argparse.Namespace, raws: list[bytes]) -> tuple[list[int], list[float], float]:
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    n = len(raws)
    statuses = [0] * n
    latencies = [0.0] * n
    nxt = 0
    retries: list[int] = []

    async def worker() -> None:
        nonlocal nxt
        conn = Conn(host, port)
        while nxt < n:
            i = nxt
            nxt += 1
            t = time.perf_counter()
            statuses[i] = await conn.request(raws[i])
            latencies[i] = time.perf_counter() - t
        conn.close()
        retries.append(conn.retries)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    RETRIES[0] = sum(retries)
    return statuses, latencies, time.perf_counter() - t0


async def opened(args: argparse.Namespace, raws: list[bytes]) -> tuple[list[int], list[float], float]:
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    n = len(raws)
    statuses = [0] * n
    latencies = [0.0] * n
    idle: list[Conn] = []
    pending: set[asyncio.Task[None]] = set()
    slot = asyncio.Semaphore(args.max_connections)

    async def one(i: int, due: float) -> None:
        async with slot:
            conn = idle.pop() if idle else Conn(host, port)
            statuses[i] = await conn.request(raws[i])
            latencies[i] = time.perf_counter() - due
            idle.append(conn)

    t0 = time.perf_counter()
    interval = 1.0 / args.rate
    for i in range(n):
        due = t0 + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    RETRIES[0] = sum(c.retries for c in idle)
    for c in idle:
        c.close()
    return statuses, latencies, time.perf_counter() - t0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["closed", "open"])
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--type", default="invoice.paid", help="x-event-type of every delivery")
    p.add_argument("--dup", type=float, default=0.1, help="share of repeated deliveries")
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--max-connections", type=int, default=256)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--key-prefix", default=uuid.uuid4().hex[:8])
    p.add_argument("--dump", help="write every request's latency (s), in send order, to this file")
    args = p.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    n = args.requests if args.mode == "closed" else int(args.rate * args.duration)
    raws, keys = build_requests(args.url, n, args.dup, args.secret, args.type, args.seed, args.key_prefix)
    runner = closed if args.mode == "closed" else opened
    statuses, latencies, elapsed = asyncio.run(runner(args, raws))
    if args.dump:
        with open(args.dump, "w") as f:
            f.writelines(f"{x:.6f} {s}\n" for x, s in zip(latencies, statuses, strict=True))
    extra: dict[str, Any] = {"concurrency": args.concurrency} if args.mode == "closed" else {
        "target_rate_per_s": args.rate, "duration_s": args.duration}
    extra["dup_share"] = args.dup
    print(json.dumps(report(args.mode, keys, statuses, latencies, elapsed, extra)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
