"""Log streaming throughput: the SSE stream next to journalctl on the same unit, same run.

    python -m bench.log_throughput [--lines 200000]

live:     a job prints N lines as fast as it can; an SSE follower (rnx.Client over the Unix
          socket) and `journalctl -f -o cat -u UNIT` read it at the same time, each timed from
          the job's start to its Nth line.
history:  the same N lines read again after the job ended: SSE without follow, next to
          `journalctl -o cat` and `journalctl -o json` (what the agent parses) on the unit.
Prints lines per second.
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time

from rnx.client import Client

SOCKET = "/run/joblet/joblet.sock"


def journalctl_lines(args: list[str], expect: int) -> float:
    start = time.perf_counter()
    with subprocess.Popen(["journalctl", "--no-pager", *args], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        seen = 0
        while seen < expect and proc.stdout.readline():
            seen += 1
        elapsed = time.perf_counter() - start
        proc.kill()
    assert seen >= expect, (args, seen)
    return elapsed


def sse_lines(job_id: str, expect: int, *, follow: bool) -> float:
    start = time.perf_counter()
    seen = 0
    with Client(socket=SOCKET) as client:
        for event in client.events(job_id, follow=follow):
            seen += event.kind == "log"
            if seen == expect:
                break
    assert seen == expect, seen
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    count = parser.parse_args().lines
    with Client(socket=SOCKET) as client:
        job = client.run(["seq", "1", str(count)])
    unit = job.unit
    timings: dict[str, float] = {}

    def follow_journalctl() -> None:
        # +1: PID 1's "Started ..." line is part of `-u UNIT`.
        timings["journalctl"] = journalctl_lines(
            ["-f", "-o", "cat", "-n", "all", "-u", unit], count + 1
        )

    reader = threading.Thread(target=follow_journalctl)
    reader.start()
    live_sse = sse_lines(job.id, count, follow=True)
    reader.join()
    hist_sse = sse_lines(job.id, count, follow=False)
    hist_cat = journalctl_lines(["-o", "cat", f"_SYSTEMD_UNIT={unit}"], count)
    hist_json = journalctl_lines(["-o", "json", f"_SYSTEMD_UNIT={unit}"], count)
    print(f"{count} lines of one job; lines per second (higher is better)")
    print(f"{'':10}{'SSE (rnx client)':>18}{'journalctl -o cat':>19}{'journalctl -o json':>20}")
    print(f"{'live':10}{count / live_sse:>18,.0f}{count / timings['journalctl']:>19,.0f}{'-':>20}")
    print(
        f"{'history':10}{count / hist_sse:>18,.0f}{count / hist_cat:>19,.0f}"
        f"{count / hist_json:>20,.0f}"
    )


if __name__ == "__main__":
    main()
