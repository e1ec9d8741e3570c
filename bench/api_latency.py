"""Submit -> RUNNING through the API next to the engine called in process, same run.

    python -m bench.api_latency [-n 200]     (from the repository root, as root)

/bin/true jobs, sequential. The API answers POST /v1/jobs once the job's process exec'd (the
start job is done), which is when the engine's submit() returns: the difference is HTTP, JSON,
TLS and the identity check. Prints p50/p95 in ms and the ratio to the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from bench.common import client_config, engine, pct
from rnx.client import AsyncClient
from rnx.config import resolve_target

REQUEST = {"command": "/bin/true", "limits": {"cpu_percent": 100, "memory_bytes": "256M"}}


async def timed(count: int, one: Callable[[], Awaitable[None]]) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await one()
        samples.append(time.perf_counter() - start)
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200)
    count = parser.parse_args().n
    unix = AsyncClient(
        resolve_target(config_path=None, node=None, socket_path="/run/joblet/joblet.sock")
    )
    tls = AsyncClient(resolve_target(config_path=client_config(), node=None, socket_path=None))
    rows: dict[str, list[float]] = {}
    try:
        async with engine() as service:

            async def direct() -> None:
                await service.submit(REQUEST, owner="bench")

            async def over(client: AsyncClient) -> None:
                await client.request("POST", "/v1/jobs", body=REQUEST)

            for _ in range(10):  # warm up PID 1, the connections, the page cache
                await direct()
                await over(unix)
                await over(tls)
            rows["engine (in process)"] = await timed(count, direct)
            rows["API, Unix socket"] = await timed(count, lambda: over(unix))
            rows["API, HTTPS + mTLS"] = await timed(count, lambda: over(tls))
    finally:
        await unix.close()
        await tls.close()
    base = pct(rows["engine (in process)"], 0.5)
    print(f"submit -> RUNNING of /bin/true, N={count} sequential; milliseconds")
    print(f"{'':24}{'p50':>8}{'p95':>8}{'p50 / engine':>14}")
    for label, samples in rows.items():
        p50 = pct(samples, 0.5)
        print(f"{label:24}{p50:>8.1f}{pct(samples, 0.95):>8.1f}{p50 / base:>14.2f}")


if __name__ == "__main__":
    asyncio.run(main())
