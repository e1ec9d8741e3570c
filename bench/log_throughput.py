"""Log streaming throughput: the SSE stream next to journalctl on the same unit, same run.

    python -m bench.log_throughput [--lines 200000]

live:     a job prints N lines as fast as it can; an SSE follower (rnx's AsyncClient over the
          Unix socket) and `journalctl -f -o cat -u UNIT` read it at the same time; each is timed
          from the job's start to its Nth line.
history:  the same N lines read again after the job ended: SSE without follow vs
          `journalctl -o cat -u UNIT`, and `journalctl -o json` (what the agent parses).
Prints lines per second.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from rnx.client import AsyncClient
from rnx.config import resolve_target


async def journalctl_lines(args: list[str], expect: int, *, stop_at_count: bool) -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "journalctl", "--no-pager", *args, stdout=asyncio.subprocess.PIPE, limit=1 << 24
    )
    assert proc.stdout is not None
    seen = 0
    while seen < expect and await proc.stdout.readline():
        seen += 1
    elapsed = time.perf_counter() - start
    if stop_at_count:
        proc.kill()
    await proc.wait()
    assert seen >= expect, (args, seen)
    return elapsed


async def sse_lines(client: AsyncClient, job_id: str, expect: int, *, follow: bool) -> float:
    start = time.perf_counter()
    seen = 0
    async for event in client.events(job_id, follow=follow):
        if event.kind == "log":
            seen += 1
            if seen == expect:
                break
    assert seen == expect, seen
    return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    count = parser.parse_args().lines
    client = AsyncClient(
        resolve_target(config_path=None, node=None, socket_path="/run/joblet/joblet.sock")
    )
    try:
        job = await client.request(
            "POST", "/v1/jobs", body={"command": "seq", "args": ["1", str(count)]}
        )
        unit = job["unit"]
        live_sse, live_journalctl = await asyncio.gather(
            sse_lines(client, job["id"], count, follow=True),
            journalctl_lines(
                ["-f", "-o", "cat", "-n", "all", "-u", unit], count + 1, stop_at_count=True
            ),  # +1: PID 1's "Started" line
        )
        hist_sse = await sse_lines(client, job["id"], count, follow=False)
        hist_cat = await journalctl_lines(
            ["-o", "cat", f"_SYSTEMD_UNIT={unit}"], count, stop_at_count=False
        )
        hist_json = await journalctl_lines(
            ["-o", "json", f"_SYSTEMD_UNIT={unit}"], count, stop_at_count=False
        )
    finally:
        await client.close()
    print(f"{count} lines of one job; lines per second (higher is better)")
    print(f"{'':10}{'SSE (rnx client)':>18}{'journalctl -o cat':>19}{'journalctl -o json':>20}")
    print(f"{'live':10}{count / live_sse:>18,.0f}{count / live_journalctl:>19,.0f}{'-':>20}")
    print(
        f"{'history':10}{count / hist_sse:>18,.0f}{count / hist_cat:>19,.0f}"
        f"{count / hist_json:>20,.0f}"
    )
    print("live is bounded by how fast journald stores the job's output; history by reading it.")


if __name__ == "__main__":
    asyncio.run(main())
