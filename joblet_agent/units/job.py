"""JobSpec + agent config + host facts -> the ordered unit properties of a job's transient service.

Pure: no I/O, no D-Bus. Unit conversions live here (percent of a core -> microseconds per second).
Golden tests in tests/unit/golden/ pin the exact output.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from joblet_agent.domain.config import AgentConfig, JobPolicy
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import BASE_READ_ONLY, JobSpec, Limits
from joblet_agent.domain.user import JobUser
from joblet_agent.units import deadline, end_record
from joblet_agent.units.exec_channel import INIT, channel_dependencies, init_argv, init_bind
from joblet_agent.units.network import (
    NO_NETWORK,
    JobNetwork,
    joining,
    network_binds,
    network_properties,
)
from joblet_agent.units.paths import WORK, JobPaths
from joblet_agent.units.properties import Property, prop
from joblet_agent.units.runtime import runtime_environment, runtime_mounts
from joblet_agent.units.sandbox import in_job, sandbox_properties
from joblet_agent.units.volume import VolumeBinding, job_volume_properties

if TYPE_CHECKING:
    from joblet_agent.domain.runtime_binding import InstalledRuntime

USEC_PER_SEC = 1_000_000

# The documented minimal environment every job starts from; the agent's own never leaks in.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def job_environment(
    job_id: str, spec: JobSpec, runtime: InstalledRuntime | None = None
) -> dict[str, str]:
    """The documented minimal set, then the runtime's, then what the job asked for; never the
    agent's own."""
    env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", "HOME": str(WORK), "JOB_ID": job_id}
    if runtime is not None:
        return runtime_environment(runtime, env, spec.env)
    env.update(spec.env)
    return env


def environment_file(values: Mapping[str, str]) -> str:
    """KEY="VALUE" lines in systemd's EnvironmentFile syntax; any value survives verbatim."""
    lines = []
    for key, value in values.items():
        quoted = "".join("\\" + c if c in '\\"`$' else c for c in value)
        lines.append(f'{key}="{quoted}"\n')
    return "".join(lines)


def exec_escape(arg: str) -> str:
    """PID 1 expands $VAR and ${VAR} in ExecStart arguments; a job's argv must reach it verbatim."""
    return arg.replace("$", "$$")


def cpu_mask(cpus: tuple[int, ...]) -> bytes:
    """CPU numbers -> the little-endian bit mask systemd takes for AllowedCPUs/CPUAffinity."""
    mask = bytearray((max(cpus) // 8) + 1)
    for cpu in cpus:
        mask[cpu // 8] |= 1 << (cpu % 8)
    return bytes(mask)


def usec(seconds: float) -> int:
    return round(seconds * USEC_PER_SEC)


def translate(
    job_id: str,
    spec: JobSpec,
    config: AgentConfig,
    host: HostInfo,
    paths: JobPaths,
    *,
    root: PurePosixPath,
    user: JobUser,
    executable: str,
    init: PurePosixPath,
    volumes: tuple[VolumeBinding, ...] = (),
    network: JobNetwork = NO_NETWORK,
    runtime: InstalledRuntime | None = None,
    slice_name: str | None = None,
) -> list[Property]:
    """`executable` is the command resolved to an absolute path inside the job's root; argv[0]
    stays as the user typed it. `root` is the skeleton it gets as its RootDirectory. `volumes`
    are the job's volumes, mounted on the host already; `runtime` is the one spec.runtime
    names, resolved; `slice_name`, its owner's slice (units/owner.py; else joblet.yml's slice);
    `init` is the host's joblet-init, the job's main process, which runs the command as its
    child (units/exec_channel.py). Nothing here runs privileged: no ExecStartPre=+, no
    ExecStopPost=+ (its network is made by helper units, units/network.py; its end is recorded
    by one, units/end_record.py)."""
    limits = spec.limits
    environment = job_environment(job_id, spec, runtime)
    description = f"Joblet job {job_id}" + (f" ({spec.name})" if spec.name else "")
    props = [
        prop("Description", description),
        prop("Type", "exec"),  # the start call returns once exec() succeeded, or fails with why
        prop(
            "ExecStart",
            [
                [
                    str(INIT),
                    [
                        exec_escape(a)
                        for a in init_argv(executable, spec.argv, tty=spec.tty, stdin=spec.stdin)
                    ],
                    False,
                ]
            ],
        ),
        prop("Environment", [f"{key}={value}" for key, value in environment.items()]),
        # Secret values never enter unit properties, which any local user can read over D-Bus:
        # PID 1 reads them from a root-only file at exec time; the agent deletes it once started.
        *([prop("EnvironmentFiles", [[str(paths.secrets), True]])] if spec.secret_env else []),
        prop("WorkingDirectory", in_job(WORK, spec.workdir)),
        prop("StandardInput", "null"),
        prop("StandardOutput", "journal"),
        prop("StandardError", "journal"),
        prop("Slice", slice_name or config.slice),
        # Unloaded as soon as it ended, failed or not: how it ended is recorded outside it (by
        # the helper these name, units/end_record.py), and failed jobs must not pile up in
        # `systemctl --failed`.
        prop("CollectMode", "inactive-or-failed"),
        *end_record.triggers(job_id),
        *channel_dependencies(job_id),
        *journal_properties(job_id, config.jobs),
        prop("KillMode", "control-group"),
        prop("SendSIGKILL", True),
        prop("TimeoutStopUSec", usec(config.jobs.stop_grace_sec)),
        prop("CPUAccounting", True),
        prop("MemoryAccounting", True),
        prop("TasksAccounting", True),
        prop("TasksMax", limits.max_tasks),
        *sandbox_properties(
            host,
            user,
            root=root,
            work_image=paths.work_image,
            tmp_bytes=config.jobs.tmp_bytes,
            extra_read_only=[*network_binds(network), init_bind(init)],
            relax=spec.relax,
            network=network_properties(network),
            runtime=runtime_mounts(runtime, BASE_READ_ONLY) if runtime else None,
        ),
        *joining(network, job_id),
        *job_volume_properties(volumes),
    ]
    if limits.memory_bytes is not None:
        props.append(prop("MemoryMax", limits.memory_bytes))
    # Swap would let a job live past its memory limit.
    props.append(prop("MemorySwapMax", 0))
    if throttles_io(limits, host):
        # A path, not a device node: systemd stats it and throttles the block device behind it
        # (whole disk for a partition; hosts without udev have no /dev/block/MAJ:MIN nodes).
        # It is also the disk under each job's /work image: the loop driver issues the job's
        # /work IO on behalf of the job's cgroup (Linux 5.12+), so the limit covers it too.
        # From the start: PID 1's set-up of the job writes nothing throttled that others wait
        # on, since the agent flushed the /work image to disk before (adapters/job_root.py).
        devices = [str(config.jobs_dir)]
        props.append(prop("IOAccounting", True))
        if limits.io_read_bps:
            props.append(prop("IOReadBandwidthMax", [[d, limits.io_read_bps] for d in devices]))
        if limits.io_write_bps:
            props.append(prop("IOWriteBandwidthMax", [[d, limits.io_write_bps] for d in devices]))
    if limits.cpu_cores is not None:
        mask = cpu_mask(limits.cpu_cores)
        # AllowedCPUs is only enforced on cgroup v2; CPUAffinity everywhere. Set both.
        props += [prop("AllowedCPUs", mask), prop("CPUAffinity", mask)]
    if limits.timeout_sec is not None:
        # A timer PID 1 keeps, which `rnx job extend` can move (units/deadline.py).
        props += deadline.job_side(job_id)
    if config.jobs.max_timeout_sec is not None:
        # What no extension passes: RuntimeMaxSec cannot change while the job runs.
        props.append(prop("RuntimeMaxUSec", usec(config.jobs.max_timeout_sec)))
    return props


def journal_properties(job_id: str, policy: JobPolicy) -> list[Property]:
    """How journald takes a job's output (security-audit M6): its own rate limit, generous
    enough for a chatty job (100,000 lines a minute by default: journald's default for services
    is 10,000 per 30 s), so no one job fills the journal; `<N>` at a line's start kept as text,
    not read as a priority (`<0>` would page every logged-in terminal: journald's wall); and
    an identifier of its own, so no job's lines pass for the agent's by naming its program
    `joblet-agent`."""
    return [
        prop("LogRateLimitIntervalUSec", usec(policy.log_interval_sec)),
        prop("LogRateLimitBurst", policy.log_lines),
        prop("SyslogLevelPrefix", False),
        prop("SyslogIdentifier", f"job-{job_id[:8]}"),
    ]


def running_limits(limits: Limits) -> list[Property]:
    """The limits set once the job's own program runs (SetUnitProperties), never on its unit's
    start: a CPU quota would throttle the set-up PID 1 does in the job's cgroup too (its mounts,
    the loop device of its /work, the seccomp compile), and that set-up holds a lock every other
    job's start waits for (/dev/loop-control). Its program runs unthrottled for the few
    milliseconds until then. Memory, tasks and IO stay at start: they slow no set-up."""
    if limits.cpu_percent is None:
        return []
    return [prop("CPUQuotaPerSecUSec", limits.cpu_percent * USEC_PER_SEC // 100)]


def throttles_io(limits: Limits, host: HostInfo) -> bool:
    """Whether the job's unit gets IO bandwidth limits (from its start)."""
    return bool(host.io_device and (limits.io_read_bps or limits.io_write_bps))
