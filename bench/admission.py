"""The admission queue and schedules, each next to its reference in the same run:

  drain      1,000 `/bin/true` jobs through the engine (in process) with admission.max_running
             20, submitted one after the other as fast as the engine answers (the queue paces
             them), against the same jobs with no queue (capacity 1024) and the client keeping
             20 in flight: the queue's overhead is the difference in time to drain;
  memory     the real agent's RSS at rest, with 1,000 jobs QUEUED (capacity 1, one job holding
             it), and again after a restart with them still queued; the job database's growth;
  firing     100 jobs scheduled for the same second through the real agent: when the agent
             heard the firing (queued_at) and when each started (RUNNING), late by how much,
             p50/p99; against 100 of PID 1's own timers (systemd-run --on-calendar) due in one
             second, starting /bin/true (their ExecMainStartTimestamp).

Run inside the sandbox (`make bench`) as root: python -m bench.admission [-n 1000]
Not a test: no asserts. It changes the sandbox agent's joblet.yml for the memory part and puts
back what was there.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import engine, pct, submit
from joblet_agent.adapters.systemd_dbus import SystemdBus
from joblet_agent.domain.capacity import AdmissionPolicy
from joblet_agent.services.job.service import JobService
from rnx.client import Client
from tests.integration.configured_agent import configured_agent, restart_agent

REQUEST = {"command": "/bin/true"}
DATABASE = Path("/var/lib/joblet/jobs.sqlite")


# -- drain ----------------------------------------------------------------------------------------


async def drain_queued(service: JobService, count: int) -> tuple[float, float]:
    """All submitted at once (the queue holds what does not fit: those submits answer QUEUED at
    once), then all ended: (seconds until every submit was answered, seconds to drain)."""
    start = time.perf_counter()
    records = await asyncio.gather(*(submit(service, REQUEST) for _ in range(count)))
    submitted = time.perf_counter() - start
    for record in records:
        await service.wait(record.id)
    return submitted, time.perf_counter() - start


async def drain_paced(service: JobService, count: int, in_flight: int) -> float:
    """The same jobs with no queue: the client keeps `in_flight` of them going."""
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            record = await submit(service, REQUEST)
            await service.wait(record.id)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - start


async def drain(count: int, capacity: int) -> None:
    """Twice each, in the order queue, no queue, no queue, queue: a drift of the host's load
    over the run weighs on both alike."""
    queued_runs: list[float] = []
    paced_runs: list[float] = []
    submits: list[float] = []
    for queue in (True, False, False, True):
        if queue:
            async with engine(admission=AdmissionPolicy(max_running=capacity)) as (service, _):
                submitted, taken = await drain_queued(service, count)
            queued_runs.append(taken)
            submits.append(submitted)
        else:
            async with engine() as (service, _bus):
                paced_runs.append(await drain_paced(service, count, capacity))
    queued, paced, submitted = (sum(v) / len(v) for v in (queued_runs, paced_runs, submits))
    print(f"\n## drain: {count} x /bin/true, {capacity} at a time (engine in process)\n")
    print("| | to drain (s), mean of 2 | jobs/s | submit all (s) |")
    print("|---|---|---|---|")
    print(
        f"| the queue (admission.max_running {capacity}), all submitted at once | {queued:.1f} | "
        f"{count / queued:.1f} "
        f"| {submitted:.1f} |"
    )
    print(
        f"| no queue, {capacity} in flight (the client) | {paced:.1f} | {count / paced:.1f} | - |"
    )
    print(
        f"| the queue's overhead | {queued - paced:+.1f} ({(queued / paced - 1) * 100:+.1f} %) "
        "| | |"
    )
    print(
        f"\nEach run (s): the queue {', '.join(f'{v:.1f}' for v in queued_runs)}; no queue "
        f"{', '.join(f'{v:.1f}' for v in paced_runs)}."
    )


# -- memory ---------------------------------------------------------------------------------------


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def agent_rss() -> int:
    """The agent's resident memory (VmRSS), KiB."""
    pid = sh("systemctl", "show", "-P", "MainPID", "joblet.service").strip()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def queued_row_bytes() -> float:
    """The average size of a QUEUED job's record in the job database (read only)."""
    db = sqlite3.connect(f"file:{DATABASE}?mode=ro", uri=True)
    try:
        (size,) = db.execute(
            "SELECT avg(length(record)) FROM jobs WHERE state = 'QUEUED'"
        ).fetchone()
    finally:
        db.close()
    return float(size or 0)


def memory(count: int) -> None:
    with configured_agent("admission:\n  max_running: 1\n"), Client() as client:
        at_rest = agent_rss()

        holder = client.run(["sleep", "3600"])
        ids = []
        start = time.perf_counter()
        for _ in range(count):
            ids.append(client.run(["/bin/true"]).id)
        submitted = time.perf_counter() - start
        queued = agent_rss()
        restart_agent()
        after_restart = agent_rss()
        waiting = len(client.list(state="QUEUED", limit="1000"))
        row_bytes = queued_row_bytes()
        for job_id in ids:
            client.cancel(job_id)
            client.delete(job_id)
        client.stop(holder.id)
        client.delete(holder.id)
    print(f"\n## memory: the agent with {count} jobs QUEUED (its VmRSS)\n")
    print("| | agent RSS (MiB) |")
    print("|---|---|")
    print(f"| at rest (the reference) | {at_rest / 1024:.1f} |")
    print(
        f"| {count} queued, just submitted ({submitted:.1f} s over the Unix socket) | "
        f"{queued / 1024:.1f} |"
    )
    print(f"| {count} queued ({waiting} listed), after a restart | {after_restart / 1024:.1f} |")
    print(
        f"\nA queued job is one row of the job database, {row_bytes:.0f} bytes of record on "
        "average here; the agent holds none of them in memory (a pass reads the queue a page "
        "of 64 at a time)."
    )


# -- firing ---------------------------------------------------------------------------------------


def percentiles(lateness: list[float]) -> str:
    known = [v for v in lateness if not math.isnan(v)]
    return f"{pct(known, 0.5):.0f} / {pct(known, 0.99):.0f} / {max(known) * 1000:.0f}"


def next_second(ahead: float) -> datetime:
    moment = datetime.now(UTC) + timedelta(seconds=ahead)
    return moment.replace(microsecond=0) + timedelta(seconds=1)


async def reference_timers(count: int, at: datetime) -> list[float]:
    """PID 1's own timers, one second for all, each starting /bin/true."""
    spec = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    tag = f"jb-bench-{int(time.time())}"
    units = [f"{tag}-{i}" for i in range(count)]
    for unit in units:
        sh(
            "systemd-run",
            "--quiet",
            f"--unit={unit}",
            f"--on-calendar={spec}",
            "--timer-property=AccuracySec=1us",
            "--slice=joblet.slice",
            # Kept loaded once /bin/true ended, so its start time can be read.
            "--property=RemainAfterExit=yes",
            "/bin/true",
        )
    await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 5)
    bus = await SystemdBus.connect((), lambda event: None)
    lateness = []
    try:
        for unit in units:
            props = await bus.unit_properties(f"{unit}.service")
            started = (props or {}).get("ExecMainStartTimestamp", 0)
            lateness.append(started / 1e6 - at.timestamp() if started else math.nan)
    finally:
        bus.disconnect()
        stop_timers(units)
    return lateness


def stop_timers(units: list[str]) -> None:
    subprocess.run(["systemctl", "stop", *(f"{u}.service" for u in units)], check=False)


def joblet_timers(count: int, at: datetime) -> tuple[list[float], list[float]]:
    """The agent's: `rnx job run --schedule AT` for each, then their records."""
    with Client() as client:
        jobs = [client.run(["/bin/true"], schedule=at.isoformat()) for _ in range(count)]
        time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
        deadline = time.monotonic() + 300
        finals = [client.wait(job.id) for job in jobs if time.monotonic() < deadline]
        heard: list[float] = []
        started: list[float] = []
        for final in finals:
            for into, moment in ((heard, final.queued_at), (started, final.started_at)):
                into.append((moment - at).total_seconds() if moment else math.nan)
            if final.state.ended:
                client.delete(final.id)
    return heard, started


def at_once(count: int) -> list[float]:
    """The same jobs with no schedule, all submitted at once (threads, one client each):
    submit -> RUNNING of each, seconds (what starting that many hardened units takes)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> float:
        with Client() as client:
            start = time.perf_counter()
            job = client.run(["/bin/true"])
            while client.get(job.id).started_at is None:
                time.sleep(0.01)
            taken = time.perf_counter() - start
            client.delete(client.wait(job.id).id)
            return taken

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


async def firing(count: int) -> None:
    at = next_second(10)
    reference = await reference_timers(count, at)
    at = next_second(10)
    heard, started = joblet_timers(count, at)
    now = at_once(count)
    print(f"\n## firing: {count} timers due in the same second, late by (ms) p50 / p99 / max\n")
    print("| | p50 / p99 / max |")
    print("|---|---|")
    print(f"| PID 1's own timers, `/bin/true` started (the reference) | {percentiles(reference)} |")
    print(f"| Joblet: the agent heard the firing (queued_at) | {percentiles(heard)} |")
    print(f"| Joblet: the job RUNNING (its hardened unit started) | {percentiles(started)} |")
    print(
        f"| the same {count} jobs submitted at once, no schedule: submit -> RUNNING | "
        f"{percentiles(now)} |"
    )
    missing = sum(math.isnan(v) for v in reference + heard + started)
    if missing:
        print(f"\n{missing} never started.")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="jobs drained and queued")
    parser.add_argument("--capacity", type=int, default=20)
    parser.add_argument("--timers", type=int, default=100)
    parser.add_argument("--parts", default="drain,memory,firing", help="which, comma-separated")
    opts = parser.parse_args()
    parts = opts.parts.split(",")
    if "drain" in parts:
        await drain(opts.n, opts.capacity)
    if "memory" in parts:
        memory(opts.n)
    if "firing" in parts:
        await firing(opts.timers)


if __name__ == "__main__":
    asyncio.run(main())
