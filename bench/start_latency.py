"""Start latency of the job engine next to systemd itself, in the same run, same properties.

Run inside the sandbox (`make bench`) or on a host whose PID 1 is systemd, as root:

    python -m bench.start_latency [-n 200] [--concurrency 16]

For /bin/true it measures submit -> RUNNING and submit -> exit for
  engine       JobService.submit (validation, translation, record, D-Bus, signals), in process;
  raw D-Bus    the same properties through one StartTransientUnit call and its signals, no engine;
  systemd-run  `systemd-run --wait` with the same properties (includes that process's start).
Prints p50/p95 in milliseconds and the engine's ratio to each reference. Not a test: no asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath

from bench.common import engine, pct, submit
from joblet_agent.adapters.job_init import locate_init
from joblet_agent.adapters.job_root import JobDirectories
from joblet_agent.adapters.systemd_dbus import SystemdBus
from joblet_agent.domain.job import JobState
from joblet_agent.domain.jobspec import parse_job_request
from joblet_agent.domain.user import pool_user
from joblet_agent.ports import JobDone, UnitGone
from joblet_agent.services.job.service import JobService
from joblet_agent.units.job import translate
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property

# and its exec channel's socket, an auxiliary unit of the engine's start (the references have
# no aux units: init runs the command without serving execs)
ENGINE_BOOKKEEPING = ("AddRef", "OnSuccess", "OnFailure", "Requires", "After")

REQUEST = {"command": "/bin/true", "limits": {"cpu_percent": 100, "memory_bytes": "256M"}}
Sample = tuple[float, float]  # (to running, to exit) in seconds


async def run_many(
    one: Callable[[], Awaitable[Sample]], count: int, concurrency: int
) -> list[Sample]:
    samples: list[Sample] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            samples.append(await one())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


class RawDBus:
    """The reference without Joblet's engine: one StartTransientUnit, then wait for signals."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[asyncio.Event, asyncio.Event]] = {}

    def bind(self, service: JobService, bus: SystemdBus) -> None:
        """Use the engine's configuration, host facts and bus connection."""
        self.config, self.host, self.bus = service.config, service.host, bus
        self.root = service.root

    def on_event(self, event: JobDone | UnitGone) -> None:
        events = self.pending.get(event.unit)
        if events is None:
            return
        running, ended = events
        if isinstance(event, JobDone):
            running.set()
        else:
            ended.set()

    async def properties(self, job_id: str) -> list[Property]:
        """The job unit's properties, with its directories and /work image made beforehand
        (untimed: the references measure the unit, the engine also pays for mkfs)."""
        spec = parse_job_request(REQUEST, self.config.jobs, self.host).spec
        paths = JobPaths.for_job(PurePosixPath(self.config.jobs_dir), job_id)
        user = pool_user(self.config.jobs, self.config.jobs.max_running - 1)
        await JobDirectories().create(
            paths, user, workdir=None, work_bytes=self.config.jobs.work_bytes
        )
        props = translate(
            job_id,
            spec,
            self.config,
            self.host,
            paths,
            root=self.root,
            user=user,
            executable="/bin/true",
            init=PurePosixPath(locate_init()),
        )
        # The engine learns of a job's end through these (its joblet-ended@ target, its unit kept
        # loaded until read); the references see the unit unloaded instead.
        return [p for p in props if p.name not in ENGINE_BOOKKEEPING]

    async def one(self) -> Sample:
        job_id = str(uuid.uuid4())
        unit = f"joblet-job-{job_id}.service"
        props = await self.properties(job_id)
        running, ended = asyncio.Event(), asyncio.Event()
        self.pending[unit] = (running, ended)
        start = time.perf_counter()
        await self.bus.start_transient(unit, props)
        await running.wait()
        to_running = time.perf_counter() - start
        await ended.wait()
        del self.pending[unit]
        return to_running, time.perf_counter() - start


def unit_file_value(p: Property) -> tuple[str, str]:
    """A property as systemd-run's `-p Name=value` (unit-file syntax) spells it."""
    name, value = p.name, p.value
    match p.signature:
        case "a(ssbt)":
            return name, " ".join(
                f"{'-' if miss else ''}{src}:{dst}" for src, dst, miss, _ in value
            )
        case "a(ss)":
            return name, " ".join(f"{path}:{opts}" for path, opts in value)
        case "a(ssba(ss))":
            return name, " ".join(
                f"{'-' if miss else ''}{src}:{dst}" + "".join(f":{p}:{o}" for p, o in parts)
                for src, dst, miss, parts in value
            )
        case "(bas)":
            return name, ("" if value[0] else "~") + " ".join(value[1])
        case "a(iayu)":
            return name, "any"  # the only address list the profile uses
        case "as":
            return name, " ".join(value)
        case "b":
            return name, "yes" if value else "no"
    if name in ("CapabilityBoundingSet", "AmbientCapabilities") and value == 0:
        return name, ""
    if name == "RestrictNamespaces" and value == 0:
        return name, "yes"
    if name == "UMask":
        return name, f"{value:04o}"
    if name == "SystemCallErrorNumber":
        return name, "EPERM"
    if name == "CPUQuotaPerSecUSec":
        return "CPUQuota", f"{int(value) // 10_000}%"
    if name.endswith("USec"):
        return name[: -len("USec")] + "Sec", f"{value}us"
    return name, str(value)


def systemd_run_args(props: list[Property]) -> list[str]:
    """The same properties in systemd-run's -p syntax."""
    args = ["systemd-run", "--quiet", "--wait", "--collect", "--slice=joblet.slice"]
    for p in props:
        if p.name in ("ExecStart", "Slice", "Description", "CollectMode"):
            continue
        if p.name == "ExecStopPostEx":
            path, argv, flags = p.value[0]
            prefix = ("+" if "privileged" in flags else "") + (
                "-" if "ignore-failure" in flags else ""
            )
            quoted = " ".join(shlex.quote(a) for a in argv[1:])
            args.append(f"--property=ExecStopPost={prefix}{path} {quoted}")
        elif p.name == "Environment":
            args += [f"--setenv={e}" for e in p.value]
        else:
            name, value = unit_file_value(p)
            args.append(f"--property={name}={value}")
    return [*args, "/bin/true"]


async def systemd_run_one(args: list[str]) -> Sample:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*args)
    await proc.wait()
    elapsed = time.perf_counter() - start
    return float("nan"), elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    opts = parser.parse_args()

    raw = RawDBus()
    async with engine(also=raw.on_event) as (service, bus):
        raw.bind(service, bus)
        host = service.host

        async def engine_one() -> Sample:
            start = time.perf_counter()
            record = await submit(service, REQUEST)
            to_running = time.perf_counter() - start
            if record.state is not JobState.COMPLETED:
                record = await service.wait(record.id)
            assert record.state is JobState.COMPLETED, record
            return to_running, time.perf_counter() - start

        # A fresh /work image for every systemd-run too (made before timing).
        run_args = [
            systemd_run_args(await raw.properties(str(uuid.uuid4()))) for _ in range(2 * opts.n + 1)
        ]
        check = await asyncio.create_subprocess_exec(*run_args.pop(), stderr=subprocess.PIPE)
        _, err = await check.communicate()
        if check.returncode != 0:
            raise SystemExit(f"systemd-run reference failed: {err.decode()}")
        for _ in range(10):  # warm up PID 1, the bus and the page cache
            await engine_one()
            await raw.one()
        rows = []
        for label, concurrency in (
            ("sequential", 1),
            (f"{opts.concurrency} concurrent", opts.concurrency),
        ):
            ours = await run_many(engine_one, opts.n, concurrency)
            dbus = await run_many(raw.one, opts.n, concurrency)
            sdrun = await run_many(lambda: systemd_run_one(run_args.pop()), opts.n, concurrency)
            rows.append((label, ours, dbus, sdrun))

    print(
        f"Start latency of /bin/true, N={opts.n} per cell, systemd {host.systemd_version}, "
        f"cgroup {host.cgroup_mode}; milliseconds"
    )
    print(
        f"{'':16}{'':>14}{'engine':>10}{'raw D-Bus':>11}{'systemd-run':>13}"
        f"{'engine/raw':>12}{'engine/s-run':>14}"
    )
    for label, ours, dbus, sdrun in rows:
        for phase, index in (("submit->RUNNING", 0), ("submit->exit", 1)):
            for q, name in ((0.5, "p50"), (0.95, "p95")):
                e = pct([s[index] for s in ours], q)
                d = pct([s[index] for s in dbus], q)
                r = pct([s[1] for s in sdrun], q) if index == 1 else float("nan")
                ratio_r = f"{e / r:>14.2f}" if index == 1 else f"{'-':>14}"
                print(
                    f"{label:16}{phase + ' ' + name:>14}{e:>10.1f}{d:>11.1f}"
                    f"{(f'{r:.1f}' if index == 1 else '-'):>13}{e / d:>12.2f}{ratio_r}"
                )
    print(
        "systemd-run has no RUNNING moment to observe; it is compared on submit->exit, and it "
        "pays for its own process start and bus connection."
    )


if __name__ == "__main__":
    asyncio.run(main())
