"""Validation of job requests at the edge: an untrusted mapping in, a JobSpec or a clear error out.

Every refusal names the field path, the value and what is allowed; nothing is clamped silently.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from joblet_agent.domain.admission import DEFAULT_PRIORITY, parse_priority
from joblet_agent.domain.config import Enforcement, JobPolicy
from joblet_agent.domain.fields import HIDDEN, Fields
from joblet_agent.domain.host import Controller, HostInfo
from joblet_agent.domain.job import RELAXATIONS, JobSpec, Limits
from joblet_agent.domain.network import NetworkMode, check_job_network, parse_egress
from joblet_agent.domain.quantities import (
    check_cpus,
    parse_cpuset,
    parse_duration,
    parse_size,
)
from joblet_agent.domain.runtime_reference import REFERENCE_RULE, parse_reference
from joblet_agent.domain.volume import parse_volume_mounts
from joblet_agent.domain.when import When, parse_when
from joblet_agent.errors import ErrorCode, JobletError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JOB_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Set by the agent or by systemd for the job's process; a request may not forge them.
RESERVED_ENV = frozenset(
    {
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "SYSTEMD_EXEC_PID",
        "MAINPID",
        "MANAGERPID",
        "SERVICE_RESULT",
        "EXIT_CODE",
        "EXIT_STATUS",
        "WATCHDOG_PID",
        "WATCHDOG_USEC",
        "CREDENTIALS_DIRECTORY",
        "RUNTIME_DIRECTORY",
        "STATE_DIRECTORY",
        "CACHE_DIRECTORY",
        "LOGS_DIRECTORY",
        "CONFIGURATION_DIRECTORY",
        "MONITOR_SERVICE_RESULT",
        "MONITOR_EXIT_CODE",
        "MONITOR_EXIT_STATUS",
        "MONITOR_INVOCATION_ID",
        "MONITOR_UNIT",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
    }
)
# Bounds on every part of a job request, checked before the part is used (docs/security.md).
# The whole JSON body is at most api/body.py's MAX_JSON_BYTES (64 KiB) before any of these.
MAX_COMMAND_CHARS = 4096  # PATH_MAX
MAX_ARGS = 1024
MAX_ARG_CHARS = 32 * 1024  # the kernel's own limit per argument is 128 KiB
MAX_ENV = 256  # variables in env, and again in secret_env
MAX_ENV_NAME_CHARS = 128
MAX_ENV_VALUE_CHARS = 32 * 1024
MAX_WORKDIR_CHARS = 4096
MAX_EGRESS_RULES = 64
MAX_RELAX = 16
MIN_MEMORY = 4 * 1024 * 1024  # below this nothing (not even a shell) starts
MIN_WORK = 16 * 1024 * 1024  # ext4 needs room for its own metadata
# Below this an IO limit only wedges the job itself: its /work's loop device, its mounts and its
# end's flush would crawl (the limits apply once its program runs, so no other job waits on them,
# units/translate.py).
MIN_IO_BPS = 1024 * 1024
MIN_CPU_PERCENT = 1
# joblet-init (every job's main process), its command, and one child of the command: at 2 a
# shell cannot run a program. (At 1, PID 1's set-up of the job's user failed: 217/USER.)
MIN_TASKS = 3
# The smallest value of each limit a job may ask for (GET /v1/health: limits.minimums).
MINIMUMS = {
    "cpu_percent": MIN_CPU_PERCENT,
    "memory_bytes": MIN_MEMORY,
    "io_bps": MIN_IO_BPS,
    "max_tasks": MIN_TASKS,
    "work_bytes": MIN_WORK,
}
_REQUIRED_CONTROLLER = {
    "cpu_percent": Controller.CPU,
    "memory_bytes": Controller.MEMORY,
    "io_read_bps": Controller.IO,
    "io_write_bps": Controller.IO,
}


@dataclass(frozen=True, slots=True)
class ValidatedRequest:
    """A job request once parsed: what the services get, never the request's Mapping."""

    spec: JobSpec
    warnings: tuple[str, ...]
    work_bytes_given: bool = False  # limits.work_bytes was asked for (else an upload may grow it)
    priority: int = DEFAULT_PRIORITY  # its place in the admission queue (domain/admission.py)
    when: When | None = None  # a start time to wait for (domain/schedule.py), else now
    memory_given: bool = False  # limits.memory_bytes was asked for (else it is the default)


def parse_job_request(
    data: object, policy: JobPolicy, host: HostInfo, *, path: str = ""
) -> ValidatedRequest:
    """`path`: where the request is in a larger one (a schedule's `job`), for errors."""
    top = Fields(data, path)
    command = top.required_string("command")
    top.check_length("command", command, MAX_COMMAND_CHARS)
    if not command.strip() or "\0" in command:
        raise top.error("command", command, "a non-empty program name or path is required")
    args = top.string_list("args", most=MAX_ARGS, longest=MAX_ARG_CHARS)
    for index, arg in enumerate(args):
        if "\0" in arg:
            raise top.error(f"args[{index}]", arg, "arguments may not contain NUL bytes")
    env = _environment(top, "env")
    secret_env = _environment(top, "secret_env", secret=True)
    for key in set(env) & set(secret_env):
        raise top.error(f"secret_env.{key}", HIDDEN, "a name may be in env or secret_env, not both")
    workdir = top.string("workdir")
    if workdir is not None:
        top.check_length("workdir", workdir, MAX_WORKDIR_CHARS)
    if workdir is not None and (
        workdir.startswith("/") or ".." in workdir.split("/") or "\0" in workdir
    ):
        raise top.error("workdir", workdir, "a relative path inside the job's work directory")
    name = top.string("name")
    if name is not None and not _JOB_NAME.match(name):
        raise top.error("name", name, "1-63 lowercase letters, digits and '-', like a hostname")
    relax = top.string_list("relax", most=MAX_RELAX)
    for index, item in enumerate(relax):
        if item not in RELAXATIONS:
            raise top.error(f"relax[{index}]", item, f"allowed: {', '.join(RELAXATIONS)}")
    upload = top.string("upload")
    if upload is not None and not _UPLOAD_ID.match(upload):
        raise top.error("upload", upload, "the id POST /v1/uploads returned")
    volumes = parse_volume_mounts(top, "volumes")
    runtime = top.parsed("runtime", _runtime)
    priority = top.parsed("priority", parse_priority, DEFAULT_PRIORITY)
    assert priority is not None
    when = top.parsed("schedule", parse_when)
    if when is not None and not when.one_shot:
        raise top.error(
            "schedule",
            when.text,
            "a one-shot time here (30s, in 10m, 2026-12-24T18:00:00Z, 2026-12-24 18:00); a "
            "calendar expression is a recurring schedule: POST /v1/schedules (rnx job run "
            "--schedule makes one)",
        )
    limits_section = top.section("limits")
    work_bytes_given = limits_section.raw("work_bytes") is not None
    memory_given = limits_section.raw("memory_bytes") is not None
    limits, warnings = _limits(limits_section, policy, host)
    network = check_job_network(top, "network", top.string("network", NetworkMode.NONE.value) or "")
    egress = tuple(
        parse_egress(top, f"allow_egress[{index}]", text)
        for index, text in enumerate(top.string_list("allow_egress", most=MAX_EGRESS_RULES))
    )
    if egress and NetworkMode.of(network) in (NetworkMode.NONE, NetworkMode.HOST):
        raise top.error(
            "allow_egress",
            [rule.target for rule in egress],
            f"the {network!r} network has no egress to narrow; use isolated or a named network",
        )
    tty = top.boolean("tty", False)
    stdin = top.boolean("stdin", tty)
    top.reject_unknown()
    spec = JobSpec(
        command=command,
        args=tuple(args),
        env=MappingProxyType(env),
        secret_env=MappingProxyType(secret_env),
        workdir=workdir,
        name=name,
        limits=limits,
        relax=tuple(sorted(set(relax))),
        upload=upload,
        volumes=volumes,
        network=network,
        allow_egress=egress,
        runtime=runtime,
        tty=tty,
        stdin=stdin,
    )
    return ValidatedRequest(
        spec, tuple(warnings), work_bytes_given, priority, when, memory_given=memory_given
    )


def _runtime(value: Any) -> str:
    """java:17 -> java-17: the canonical reference, what `rnx runtime list` names it."""
    if not isinstance(value, str):
        raise ValueError(REFERENCE_RULE)
    return str(parse_reference(value))


def _environment(top: Fields, key: str, *, secret: bool = False) -> dict[str, str]:
    """`secret`: no error shows any part of a value (audit L11), only names."""
    env = top.string_map(
        key,
        most=MAX_ENV,
        longest_name=MAX_ENV_NAME_CHARS,
        longest=MAX_ENV_VALUE_CHARS,
        secret=secret,
    )
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise top.error(f"{key}.{name}", name, "names are letters, digits and '_'")
        if name.startswith("JOB_") or name in RESERVED_ENV:
            raise top.error(
                f"{key}.{name}", name, "JOB_* and names set by the agent or systemd are reserved"
            )
        if "\0" in value:
            shown = HIDDEN if secret else value
            raise top.error(f"{key}.{name}", shown, "values may not contain NUL bytes")
    return env


def _limits(section: Fields, policy: JobPolicy, host: HostInfo) -> tuple[Limits, list[str]]:
    max_cpu = policy.max_cpu_percent or len(host.cpus) * 100
    max_memory = policy.max_memory_bytes or host.memory_bytes
    cpu = section.integer("cpu_percent", minimum=MIN_CPU_PERCENT, maximum=max_cpu)
    memory = section.parsed("memory_bytes", parse_size)
    memory_asked = memory is not None
    if memory is not None:
        section.check_range("memory_bytes", memory, MIN_MEMORY, max_memory)
    elif policy.default_memory_bytes is not None:
        # Recorded on the job like a limit it asked for: `rnx job run` and `status` show it.
        memory = min(policy.default_memory_bytes, max_memory)
    io_read = _bandwidth(section, "io_read_bps", policy)
    io_write = _bandwidth(section, "io_write_bps", policy)
    cores = section.parsed("cpu_cores", lambda value: _cpuset(value, host.cpus))
    tasks = section.integer(
        "max_tasks", policy.default_max_tasks, minimum=MIN_TASKS, maximum=policy.max_tasks
    )
    assert tasks is not None
    work = section.parsed("work_bytes", parse_size, policy.work_bytes)
    assert work is not None
    section.check_range("work_bytes", work, MIN_WORK, policy.max_work_bytes)
    timeout = section.parsed("timeout_sec", parse_duration)
    if timeout is not None:
        section.check_range("timeout_sec", timeout, 0.001, policy.max_timeout_sec)
    elif policy.default_timeout_sec is not None:  # joblet.yml's default, within its maximum
        timeout = min(policy.default_timeout_sec, policy.max_timeout_sec or math.inf)
    idle = section.parsed("idle_timeout_sec", parse_duration)
    if idle is not None:
        section.check_range("idle_timeout_sec", idle, 1, policy.max_timeout_sec)
    section.reject_unknown()
    limits = Limits(
        cpu_percent=cpu,
        memory_bytes=memory,
        io_read_bps=io_read,
        io_write_bps=io_write,
        cpu_cores=cores,
        max_tasks=tasks,
        timeout_sec=timeout,
        work_bytes=work,
        idle_timeout_sec=idle,
    )
    return limits, _enforceability(section, limits, policy, host, memory_asked=memory_asked)


def _bandwidth(section: Fields, key: str, policy: JobPolicy) -> int | None:
    value = section.parsed(key, parse_size)
    if value is not None:
        section.check_range(key, value, MIN_IO_BPS, policy.max_io_bps)
    return value


def _cpuset(value: Any, available: tuple[int, ...]) -> tuple[int, ...]:
    """A CPU list, each CPU one of `available`: checked before anything is built from it."""
    if (
        isinstance(value, list)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and value
    ):
        check_cpus(value, available)
        return tuple(sorted(set(value)))
    if not isinstance(value, str):
        raise ValueError("a CPU list like '0-1,3' or a list of CPU numbers is required")
    return parse_cpuset(value, available=available)


def _enforceability(
    section: Fields, limits: Limits, policy: JobPolicy, host: HostInfo, *, memory_asked: bool
) -> list[str]:
    """Refuse (or, if the config says so, warn about) limits this host's systemd cannot enforce."""
    warnings: list[str] = []
    for key, controller in _REQUIRED_CONTROLLER.items():
        if getattr(limits, key) is None or controller in host.controllers:
            continue
        if key == "memory_bytes" and not memory_asked:
            # joblet.yml's default, not asked for: its absence is a warning, never a refusal.
            warnings.append(
                f"memory_bytes: the '{controller}' cgroup controller is not available; the "
                "default memory limit does not hold"
            )
            continue
        why = (
            f"{section.where(key)}: this host cannot enforce it: the '{controller}' cgroup "
            f"controller is not available to systemd (cgroup mode {host.cgroup_mode})"
        )
        if policy.unenforceable_limits is Enforcement.REFUSE:
            raise JobletError(
                ErrorCode.UNSUPPORTED,
                why,
                hint="leave the limit out, or set jobs.unenforceable_limits: warn in joblet.yml",
            )
        warnings.append(why)
    if (limits.io_read_bps or limits.io_write_bps) and host.io_device is None:
        why = "io limits: the jobs' directory is not on a block device; nothing to throttle"
        if policy.unenforceable_limits is Enforcement.REFUSE:
            raise JobletError(ErrorCode.UNSUPPORTED, why)
        warnings.append(why)
    if Controller.PIDS not in host.controllers:
        # The default task limit was not asked for, so its absence is a warning, never a refusal.
        warnings.append(
            "max_tasks: the 'pids' controller is not available; fork bombs are not contained"
        )
    return warnings
