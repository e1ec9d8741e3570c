"""Try to exhaust one resource from inside a job: `python3 exhaust.py ACTION [ARG...]`.

The companion of attempt.py, with the same rules (standalone, stdlib only, run with `python3 -c`).
Once it has done its worst it prints one JSON line
    {"probe": ACTION, "outcome": "limited" | "unlimited", "errno": "ENOSPC" | null,
     "count": N, "detail": "..."}
("limited": a cap stopped it, with the errno it got; "unlimited": it did all it set out to do)
and then HOLDS what it took for HOLD seconds, so the test can check the agent, systemd and a
second job while the pressure lasts. Then it lets go and exits 0.

Every action is bounded: `fill` stops at LIMIT bytes even where nothing caps the directory (so an
uncapped /work costs the host's disk LIMIT bytes for HOLD seconds, not all of it).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Callable

MIB = 1024 * 1024


def report(probe: str, count: int, detail: str, exc: OSError | None = None) -> None:
    number = exc.errno if exc is not None else None
    verdict = {
        "probe": probe,
        "outcome": "limited" if exc is not None else "unlimited",
        "errno": errno.errorcode.get(number, str(number)) if number is not None else None,
        "count": count,
        "detail": detail + (f": {exc.strerror}" if exc is not None else ""),
    }
    print(json.dumps(verdict), flush=True)


def fill(directory: str, limit: str, hold: str) -> None:
    """Writes one file in 1 MiB blocks until the filesystem says no or LIMIT bytes are written."""
    block, written, failure = b"\xa5" * MIB, 0, None
    fd, path = tempfile.mkstemp(prefix=".joblet-fill-", dir=directory)
    try:
        while written < int(limit):
            try:
                written += os.write(fd, block[: int(limit) - written])
            except OSError as exc:
                failure = exc
                break
        if failure is None:
            try:  # a disk filesystem may report ENOSPC (or EDQUOT) only when flushing
                os.fsync(fd)
            except OSError as exc:
                failure = exc
        report("fill", written, f"wrote {written} bytes to {directory}", failure)
        time.sleep(float(hold))
    finally:
        os.close(fd)
        os.unlink(path)


def open_fds(files: str, sockets: str, hold: str) -> None:
    """FILES open files, then SOCKETS AF_UNIX sockets (socketpairs), after raising the soft
    RLIMIT_NOFILE to the hard one as any program may; EMFILE is an acceptable end."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held: list[int | socket.socket] = []
    failure = None
    try:
        for _ in range(int(files)):  # distinct unnamed files: an inode and a descriptor each
            held.append(os.open(tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR, 0o600))
        for _ in range(int(sockets) // 2):
            held.extend(socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM))
    except OSError as exc:
        failure = exc
    report("fds", len(held), f"{len(held)} descriptors open (RLIMIT_NOFILE {hard})", failure)
    time.sleep(float(hold))


def fork_bomb(hold: str) -> None:
    """Every process forks as fast as it can, forever; the first one reports its first refusal.
    The children never exit: stopping the job (its cgroup) ends them."""
    forks = 0
    while True:
        try:
            pid = os.fork()
        except OSError as exc:
            report("fork-bomb", forks, f"{forks} forks before the first refusal", exc)
            break
        if pid == 0:
            keep_forking()
        forks += 1
    time.sleep(float(hold))


def keep_forking() -> None:
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)


def memory_bomb(limit: str) -> None:
    """Touches memory 16 MiB at a time up to LIMIT bytes; a memory cap kills it on the way."""
    chunks: list[bytes] = []
    while len(chunks) * 16 * MIB < int(limit):
        chunks.append(b"\xa5" * (16 * MIB))
    report("memory-bomb", len(chunks) * 16 * MIB, "allocated and touched every byte")


def flood(lines: str) -> None:
    """LINES numbered lines as fast as Python writes them, in large writes."""
    total, batch = int(lines), 10_000
    for start in range(1, total + 1, batch):
        stop = min(start + batch, total + 1)
        sys.stdout.write("".join(f"flood {n}\n" for n in range(start, stop)))
    sys.stdout.flush()


ACTIONS: dict[str, Callable[..., None]] = {
    "fill": fill,  # DIR LIMIT_BYTES HOLD_SEC
    "fds": open_fds,  # FILES SOCKETS HOLD_SEC
    "fork-bomb": fork_bomb,  # HOLD_SEC
    "memory-bomb": memory_bomb,  # LIMIT_BYTES
    "flood": flood,  # LINES
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ACTIONS:
        print(f"usage: exhaust.py ACTION [ARG...]; actions: {' '.join(ACTIONS)}", file=sys.stderr)
        return 2
    ACTIONS[argv[0]](*argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
