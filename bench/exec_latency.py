"""Exec into a running job: round trip next to its references, same run; and copying a file
out of a job next to `cat` of the same file.

    python -m bench.exec_latency [-n 200] [--cli-n 40] [--copy-mib 1024]   (as root)

Rows, each `true` in one running job (sequential, p50/p95 in ms):
- Client.exec over the Unix socket and over HTTPS + mTLS (the round trip itself: WebSocket,
  the agent, the job's init forking `true` in the job and reporting its end);
- `rnx job exec JOB -- true` over both (the same, plus starting rnx: a Python process);
- `rnx job run -- true` (a new job: the unit, its /work image, its init; plus rnx);
- `nsenter -a -t <init> true` (the floor: entering the job's namespaces from the host, no
  cgroup, seccomp or user change) and `true` itself, forked from here.
Then `rnx job cp JOB:/work/big DEST` of a --copy-mib file next to `cat` of the same file on
the host (through /proc/<init>/root) into the same destination directory, and next to
`rnx job exec JOB -- cat` (the file through an exec's stdout).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import client_config, pct
from rnx.client import Client

SOCKET = "/run/joblet/joblet.sock"
WARM_UP = 5


def samples(count: int, once: Callable[[], object]) -> list[float]:
    taken = []
    for index in range(WARM_UP + count):
        start = time.perf_counter()
        once()
        if index >= WARM_UP:
            taken.append(time.perf_counter() - start)
    return taken


def run(*argv: str) -> None:
    done = subprocess.run(
        argv,
        check=False,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.decode()}")


def main_pid(job_id: str) -> int:
    out = subprocess.run(
        ["systemctl", "show", "-P", "MainPID", f"joblet-job-{job_id}.service"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout)


def started(client: Client, copy_mib: int) -> str:
    job = client.run(
        ["sleep", "infinity"],
        name=f"bench-exec-{os.getpid()}",
        timeout_sec=3600,
        work_bytes=f"{max(1, copy_mib * 2 // 1024 + 1)}G",
    )
    deadline = time.monotonic() + 60
    while client.get(job.id).state != "RUNNING":
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.02)
    return job.id


def throughput(mib: int, once: Callable[[], object]) -> float:
    start = time.perf_counter()
    once()
    return mib / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--cli-n", type=int, default=40)
    parser.add_argument("--copy-mib", type=int, default=1024)
    options = parser.parse_args()
    count, cli_n, mib = options.n, options.cli_n, options.copy_mib
    config = client_config()
    local, remote = Client(socket=SOCKET), Client(config=config)
    job_id = started(remote, mib)  # its owner: the certificate's user; root may exec too
    try:
        pid = main_pid(job_id)
        tcp = ("rnx", "--config", config)
        unix = ("rnx", "--socket", SOCKET)
        rows = {
            "Client.exec, Unix socket": samples(count, lambda: local.exec(job_id, ["true"])),
            "Client.exec, HTTPS + mTLS": samples(count, lambda: remote.exec(job_id, ["true"])),
            "rnx job exec, Unix socket": samples(
                cli_n, lambda: run(*unix, "job", "exec", job_id, "--", "true")
            ),
            "rnx job exec, HTTPS + mTLS": samples(
                cli_n, lambda: run(*tcp, "job", "exec", job_id, "--", "true")
            ),
            "rnx job run -- true, Unix": samples(
                cli_n, lambda: run(*unix, "job", "run", "--", "true")
            ),
            "nsenter -a into the job": samples(
                count, lambda: run("nsenter", "-a", "-t", str(pid), "true")
            ),
            "true, forked from here": samples(count, lambda: run("true")),
        }
        print(f"a command in a running job, `true`, sequential; N={count} (rnx rows N={cli_n})")
        print(f"{'':30}{'p50 ms':>9}{'p95 ms':>9}")
        for label, taken in rows.items():
            print(f"{label:30}{pct(taken, 0.5):>9.1f}{pct(taken, 0.95):>9.1f}")

        local.exec(job_id, ["sh", "-c", f"head -c {mib}M /dev/zero > /work/big"])
        with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
            dest = Path(scratch) / "big"

            def cp() -> None:
                run(*unix, "job", "cp", f"{job_id}:/work/big", str(dest))

            def cat() -> None:
                with dest.open("wb") as out:
                    subprocess.run(["cat", f"/proc/{pid}/root/work/big"], check=True, stdout=out)

            def exec_cat() -> None:
                with dest.open("wb") as out:
                    subprocess.run(
                        [*unix, "job", "exec", job_id, "--", "cat", "/work/big"],
                        check=True,
                        stdout=out,
                        stdin=subprocess.DEVNULL,
                    )

            figures = {}
            for label, once in (
                ("cat (host)", cat),
                ("rnx job cp", cp),
                ("rnx job exec cat", exec_cat),
            ):
                dest.unlink(missing_ok=True)
                figures[label] = throughput(mib, once)
                assert dest.stat().st_size == mib * 1024 * 1024, label
            dest.unlink(missing_ok=True)
        print(f"\none {mib} MiB file out of the job into {scratch} (same disk); MiB/s")
        for label, rate in figures.items():
            print(f"{label:30}{rate:>9.0f}{rate / figures['cat (host)']:>9.2f}x cat")
    finally:
        remote.stop(job_id)
        local.close()
        remote.close()


if __name__ == "__main__":
    main()
