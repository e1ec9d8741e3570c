"""Upload throughput through rnx next to `cp` of the same file on the same disk, and the agent's
peak memory while it receives.

    python -m bench.upload_throughput [--size-mib 1024] [-n 3]

Measured per round: `cp` and `dd bs=1M` of the file into the agent's state directory (the page
cache, no sync: the upload does not sync either); `Client.upload` over the Unix socket and over
mTLS (announce, stream, extract); a whole `rnx job run --upload` of the file (also makes the
job's /work image from it and starts the job). The agent's RSS is sampled every 20 ms during
the uploads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from bench.common import client_config
from rnx.client import Client

STATE = Path("/var/lib/joblet")


def agent_pid() -> int:
    out = subprocess.run(
        ["systemctl", "show", "-P", "MainPID", "joblet.service"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextmanager
def peak_rss(pid: int) -> Iterator[Callable[[], int]]:
    peak = rss(pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, rss(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield lambda: peak
    finally:
        done.set()
        thread.join()


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("-n", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    work = STATE / f"bench-upload-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    source = work / "payload.bin"
    block = os.urandom(16 * 1024 * 1024)
    with source.open("wb") as out:
        for _ in range(size // len(block)):
            out.write(block)
    os.sync()
    pid = agent_pid()
    baseline = rss(pid)
    results: dict[str, list[float]] = {}
    peaks: list[int] = []
    try:
        with Client() as unix, Client(config=client_config()) as tls:

            def upload(client: Client) -> None:
                upload_id = client.upload([str(source)]).id
                client._call("DELETE", f"/v1/uploads/{upload_id}")

            copy = work / "copy.bin"
            for _ in range(args.n):
                # cp (and cat, in coreutils 9) copy inside the kernel (copy_file_range); dd
                # with 1 MiB blocks reads and writes through user space, as rnx and the agent do.
                for name, argv in (
                    ("cp (same disk, in-kernel copy)", ["cp", str(source), str(copy)]),
                    (
                        "dd bs=1M (same disk, user space)",
                        ["dd", f"if={source}", f"of={copy}", "bs=1M", "status=none"],
                    ),
                ):
                    results.setdefault(name, []).append(
                        timed(partial(subprocess.run, argv, check=True))
                    )
                    copy.unlink()
                with peak_rss(pid) as peak:
                    results.setdefault("rnx upload, Unix socket", []).append(
                        timed(lambda: upload(unix))
                    )
                    results.setdefault("rnx upload, mTLS", []).append(timed(lambda: upload(tls)))
                peaks.append(peak())

                def run() -> None:
                    job = unix.run(["true"], uploads=[str(source)])
                    unix.wait(str(job.id))
                    unix.delete(str(job.id))

                results.setdefault("rnx job run --upload (whole job)", []).append(timed(run))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mib = size / 1024 / 1024
    print(f"Upload of one {mib:.0f} MiB file, best of {args.n} (MiB/s):")
    for name, samples in results.items():
        best = min(samples)
        print(f"  {name:<36} {mib / best:8.0f} MiB/s   ({best:.2f} s)")
    print(
        f"Agent RSS: {baseline / 2**20:.0f} MiB before, {max(peaks) / 2**20:.0f} MiB at the peak "
        f"of the uploads (+{(max(peaks) - baseline) / 2**20:.0f} MiB for {mib:.0f} MiB sent)"
    )


if __name__ == "__main__":
    main()
