"""Signed deliveries from a host: ``python -m tests.cluster._send BASE[,BASE...] PREFIX N
[CONCURRENCY]`` (run with ``ip netns exec``) sends N deliveries keyed ``PREFIX-<i>``, spread
over the bases, and prints one JSON object: each status and how many keys got it, the keys
not answered 200, and the seconds it took."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

from tests.cluster import _hosts


def main() -> None:
    bases, prefix, n = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
    concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    keys = [f"{prefix}-{i}" for i in range(n)]
    t0 = time.monotonic()

    async def all_of() -> dict[str, int]:
        parts = [keys[i::len(bases)] for i in range(len(bases))]
        results = await asyncio.gather(*(
            _hosts.send_all(b, part, concurrency) for b, part in zip(bases, parts, strict=True)
        ))
        return {k: v for r in results for k, v in r.items()}

    result = asyncio.run(all_of())
    seconds = time.monotonic() - t0
    codes = Counter(result.values())
    print(json.dumps({"codes": {str(k): v for k, v in codes.items()}, "seconds": seconds,
                      "failed": sorted(k for k, v in result.items() if v != 200)[:20]}))


if __name__ == "__main__":
    main()
