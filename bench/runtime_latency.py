"""Start latency of a job with a runtime next to the same job without one, in the same run.

Run inside the sandbox (`make bench`) or on a host whose PID 1 is systemd, as root:

    python -m bench.runtime_latency [-n 100]

For each runtime installed in /opt/joblet/runtimes among RUNTIMES (Debian trees: their /usr
and /etc entries are bound over the host's), and for a small runtime made here from files
(its own python3 and a selective mount, like the tests'), it measures submit -> RUNNING and
submit -> exit of `true`, and of `python3 -c pass` where the runtime has python3, through the
engine, next to the same command without a runtime. The difference is what the runtime's bind
mounts cost PID 1 (and, for python3, loading the interpreter from the runtime's files).
Not a test: no asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import engine, pct, submit
from joblet_agent.adapters.runtime_store import RuntimeDirectory
from joblet_agent.domain.job import JobState
from joblet_agent.domain.runtime_binding import InstalledRuntime
from joblet_agent.services.job.service import JobService
from tests.runtime_kit import tiny_python

INSTALLED = Path("/opt/joblet/runtimes")
RUNTIMES = ("python-3.11", "python-3.11-ml", "java-17")
Sample = tuple[float, float]


class Catalog:
    """The installed runtimes plus the one made here."""

    def __init__(self, extra: list[InstalledRuntime]) -> None:
        self.directory = RuntimeDirectory(INSTALLED)
        self.arch = self.directory.arch
        self.extra = extra

    def installed(self) -> list[InstalledRuntime]:
        return self.directory.installed() + self.extra


async def one(service: JobService, request: dict[str, object]) -> Sample:
    start = time.perf_counter()
    record = await submit(service, request)
    to_running = time.perf_counter() - start
    record = await service.wait(record.id)
    assert record.state is JobState.COMPLETED, record
    return to_running, time.perf_counter() - start


async def paired(
    service: JobService, plain: dict[str, object], with_runtime: dict[str, object], n: int
) -> tuple[list[Sample], list[Sample]]:
    """Alternating, so that the machine's other work weighs on both alike."""
    for _ in range(5):  # warm up PID 1, the bus and the page cache
        await one(service, plain)
        await one(service, with_runtime)
    a: list[Sample] = []
    b: list[Sample] = []
    for _ in range(n):
        a.append(await one(service, plain))
        b.append(await one(service, with_runtime))
    return a, b


def make_tiny(made: Path) -> InstalledRuntime:
    """The small runtime of the tests, readable by the jobs' users."""
    made.chmod(0o755)
    tree = tiny_python(made / "tinypy" / "bench-tinypy", "bench-tinypy")
    for path in (made, made / "tinypy", *tree.rglob("*"), tree):
        path.chmod(0o755)
    tiny = RuntimeDirectory(made).find("bench-tinypy")
    assert tiny is not None
    return tiny


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=100)
    opts = parser.parse_args()
    made = Path(tempfile.mkdtemp(prefix="bench-runtime-", dir="/var/lib/joblet"))
    try:
        catalog = Catalog([make_tiny(made)])
        names = [n for n in RUNTIMES if any(r.name == n for r in catalog.installed())]
        missing = sorted(set(RUNTIMES) - set(names))
        async with engine(runtimes=catalog) as (service, _):
            rows: list[tuple[str, str, list[Sample], list[Sample]]] = []
            for name in [*names, "bench-tinypy"]:
                mounts = len(next(r for r in catalog.installed() if r.name == name).spec.mounts)
                for argv in (["true"], ["python3", "-c", "pass"]):
                    if name == "java-17" and argv[0] == "python3":
                        continue
                    plain: dict[str, object] = {"command": argv[0], "args": argv[1:]}
                    with_runtime = {**plain, "runtime": name}
                    label = f"{name} ({mounts} mounts)"
                    without, within = await paired(service, plain, with_runtime, opts.n)
                    rows.append((label, " ".join(argv), without, within))
    finally:
        shutil.rmtree(made, ignore_errors=True)
    print(f"Start latency with and without a runtime, N={opts.n} sequential per cell; ms")
    print(f"{'runtime':26}{'command':18}{'phase':20}{'plain':>9}{'runtime':>9}{'extra':>8}")
    for label, command, plain_s, runtime_s in rows:
        for phase, index in (("submit->RUNNING", 0), ("submit->exit", 1)):
            for q, qn in ((0.5, "p50"), (0.95, "p95")):
                a = pct([s[index] for s in plain_s], q)
                b = pct([s[index] for s in runtime_s], q)
                print(
                    f"{label:26}{command:18}{phase + ' ' + qn:20}{a:>9.1f}{b:>9.1f}{b - a:>+8.1f}"
                )
    if missing:
        print(f"not installed (make runtimes): {', '.join(missing)}")


if __name__ == "__main__":
    asyncio.run(main())
