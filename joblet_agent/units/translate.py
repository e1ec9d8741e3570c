"""JobSpec + agent config + host facts -> the ordered unit properties of a job's transient service.

Pure: no I/O, no D-Bus. Unit conversions live here (percent of a core -> microseconds per second).
Golden tests in tests/unit/golden/ pin the exact output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from joblet_agent.config import AgentConfig
from joblet_agent.host import CgroupMode, Controller, HostInfo
from joblet_agent.model import JobSpec, unit_name
from joblet_agent.units.network import (
    NO_NETWORK,
    JobNetwork,
    network_binds,
    network_properties,
    start_steps,
    stop_steps,
)
from joblet_agent.units.paths import META, WORK, JobPaths, JobUser
from joblet_agent.units.properties import Property, prop
from joblet_agent.units.runtime import runtime_environment, runtime_mounts
from joblet_agent.units.sandbox import BASE_READ_ONLY, in_job, sandbox_properties
from joblet_agent.units.volume_units import VolumeBinding, job_volume_properties

if TYPE_CHECKING:
    from joblet_agent.runtimes.resolve import InstalledRuntime

USEC_PER_SEC = 1_000_000
# systemd's "infinity" for usec and limit properties.
INFINITY = 2**64 - 1

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
    user: JobUser,
    executable: str,
    volumes: tuple[VolumeBinding, ...] = (),
    network: JobNetwork = NO_NETWORK,
    runtime: InstalledRuntime | None = None,
) -> list[Property]:
    """`executable` is the command resolved to an absolute path inside the job's root; argv[0]
    stays as the user typed it. `volumes` are the job's volumes, mounted on the host already;
    `runtime` is the one spec.runtime names, resolved."""
    limits = spec.limits
    environment = job_environment(job_id, spec, runtime)
    memcg = v1_memcg_bind(job_id, config, host)
    description = f"Joblet job {job_id}" + (f" ({spec.name})" if spec.name else "")
    props = [
        prop("Description", description),
        prop("Type", "exec"),  # the start call returns once exec() succeeded, or fails with why
        prop("ExecStart", [[executable, [exec_escape(a) for a in spec.argv], False]]),
        prop("Environment", [f"{key}={value}" for key, value in environment.items()]),
        # Secret values never enter unit properties, which any local user can read over D-Bus:
        # PID 1 reads them from a root-only file at exec time; the agent deletes it once started.
        # Missing is fine once started: systemd reads the file again for ExecStopPost.
        *([prop("EnvironmentFiles", [[str(paths.secrets), True]])] if spec.secret_env else []),
        prop("WorkingDirectory", in_job(WORK, spec.workdir)),
        prop("StandardInput", "null"),
        prop("StandardOutput", "journal"),
        prop("StandardError", "journal"),
        prop("Slice", config.slice),
        # Unload the unit as soon as it ends, failed or not: the agent has the record, and failed
        # jobs must not pile up in `systemctl --failed`.
        prop("CollectMode", "inactive-or-failed"),
        # journald must not drop a chatty job's lines. Not 0: systemd 252 treats 0 as "unset" and
        # journald then applies its default (10,000 lines per 30 s, scaled by free space; 35,000
        # of 100,000 fast lines arrived here). A 1 us window is never exceeded.
        prop("LogRateLimitIntervalUSec", 1),
        prop("KillMode", "control-group"),
        prop("SendSIGKILL", True),
        prop("TimeoutStopUSec", usec(config.jobs.stop_grace_sec)),
        prop("CPUAccounting", True),
        prop("MemoryAccounting", True),
        prop("TasksAccounting", True),
        prop("TasksMax", limits.max_tasks),
        *sandbox_properties(
            config,
            host,
            paths,
            user,
            tmp_bytes=config.jobs.tmp_bytes,
            extra_read_only=([memcg] if memcg else []) + network_binds(network),
            relax=spec.relax,
            network=network_properties(network),
            runtime=runtime_mounts(runtime, BASE_READ_ONLY) if runtime else None,
        ),
        *job_volume_properties(volumes),
    ]
    if network.attached:
        props.append(prop("ExecStartPreEx", start_steps(network)))
    if limits.cpu_percent is not None:
        props.append(prop("CPUQuotaPerSecUSec", limits.cpu_percent * USEC_PER_SEC // 100))
    if limits.memory_bytes is not None:
        props.append(prop("MemoryMax", limits.memory_bytes))
    # Swap would let a job live past its memory limit.
    props.append(prop("MemorySwapMax", 0))
    if host.io_device and (limits.io_read_bps or limits.io_write_bps):
        # A path, not a device node: systemd stats it and throttles the block device behind it
        # (whole disk for a partition; hosts without udev have no /dev/block/MAJ:MIN nodes).
        # It is also the disk under each job's /work image: the loop driver issues the job's
        # /work IO on behalf of the job's cgroup (Linux 5.12+), so the limit covers it too.
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
    props.append(
        prop(
            "ExecStopPostEx",
            [exit_recorder(paths, memcg=memcg is not None), *stop_steps(network)],
        )
    )
    if limits.timeout_sec is not None:
        props.append(prop("RuntimeMaxUSec", usec(limits.timeout_sec)))
    return props


# Runs as the unit's ExecStopPost: $1-$3 are systemd's account of the main process's end, $4 the
# cgroup v1 memory.oom_control (or ""), $5 the record to write. A job's end is then known even
# when no agent watched it: a clean exit and a SIGTERM death log the same line in the journal.
_EXIT_SCRIPT = (
    'printf "SERVICE_RESULT=%s\\nEXIT_CODE=%s\\nEXIT_STATUS=%s\\n" "$1" "$2" "$3" > "$5"; '
    '[ -z "$4" ] || grep -s "^oom_kill " "$4" >> "$5"; true'
)


# Inside the job's root, where the job's v1 memory cgroup is bound for the exit recorder only.
MEMCG = META / "memcg"


def v1_memcg_bind(job_id: str, config: AgentConfig, host: HostInfo) -> list[object] | None:
    """systemd (252 at least) recognises an OOM kill only from cgroup v2's memory.events; on v1
    it reports a plain SIGKILL. The job's root has no cgroupfs, so the unit's own v1 memory
    cgroup is bound (read-only, under the root-only META) for ExecStopPost to read its oom_kill
    count before the cgroup is removed."""
    if host.cgroup_mode is CgroupMode.UNIFIED or Controller.MEMORY not in host.controllers:
        return None
    cgroup = f"/sys/fs/cgroup/memory/{slice_path(config.slice)}/{unit_name(job_id)}"
    return [cgroup, str(MEMCG), True, 0]


def exit_recorder(paths: JobPaths, *, memcg: bool) -> list[object]:
    """ExecStopPostEx entry that writes the job's exit record (see outcome.parse_exit_record)."""
    oom_control = f"{MEMCG}/memory.oom_control" if memcg else ""
    argv = [
        "sh",
        "-c",
        exec_escape(_EXIT_SCRIPT),
        "joblet-exit-record",
        # Expanded by systemd from the ExecStopPost environment, on purpose.
        "${SERVICE_RESULT}",
        "${EXIT_CODE}",
        "${EXIT_STATUS}",
        exec_escape(oom_control),
        exec_escape(str(META / paths.exit_record.name)),  # where the record is, inside the root
    ]
    # privileged: as root with every capability (still inside the job's root), so it can read
    # cgroupfs and write the root-only record the job itself can neither read nor forge.
    return ["/bin/sh", argv, ["privileged", "ignore-failure"]]


def slice_path(slice_name: str) -> str:
    """'a-b.slice' -> 'a.slice/a-b.slice': where systemd puts a nested slice in the cgroup tree."""
    stem = slice_name.removesuffix(".slice")
    parts = stem.split("-")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))
