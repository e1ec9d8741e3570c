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
from collections.abc import Callable

from bench.common import client_config, engine, pct, submit
from rnx.client import Client

REQUEST = {"command": "/bin/true", "limits": {"cpu_percent": 100, "memory_bytes": "256M"}}
WARM_UP = 10


async def engine_samples(count: int) -> list[float]:
    samples = []
    async with engine() as (service, _bus):
        for index in range(WARM_UP + count):
            start = time.perf_counter()
            await submit(service, REQUEST)
            if index >= WARM_UP:
                samples.append(time.perf_counter() - start)
    return samples


def api_samples(count: int, make: Callable[[], Client]) -> list[float]:
    samples = []
    with make() as client:
        for index in range(WARM_UP + count):
            start = time.perf_counter()
            client._call("POST", "/v1/jobs", body=REQUEST)
            if index >= WARM_UP:
                samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200)
    count = parser.parse_args().n
    config = client_config()
    rows = {
        "engine (in process)": asyncio.run(engine_samples(count)),
        "API, Unix socket": api_samples(count, lambda: Client(socket="/run/joblet/joblet.sock")),
        "API, HTTPS + mTLS": api_samples(count, lambda: Client(config=config)),
    }
    base = pct(rows["engine (in process)"], 0.5)
    print(f"submit -> RUNNING of /bin/true, N={count} sequential; milliseconds")
    print(f"{'':24}{'p50':>8}{'p95':>8}{'p50 / engine':>14}")
    for label, samples in rows.items():
        p50 = pct(samples, 0.5)
        print(f"{label:24}{p50:>8.1f}{pct(samples, 0.95):>8.1f}{p50 / base:>14.2f}")


if __name__ == "__main__":
    main()
