"""The agent's configuration, /etc/joblet/joblet.yml: defaults and maximums for jobs.

A broken file stops start-up with one message naming the file, the key and the reason.
A missing file means built-in defaults.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from joblet_agent.domain.capacity import AdmissionPolicy, Quotas, parse_admission, parse_quotas
from joblet_agent.domain.fields import Fields
from joblet_agent.domain.job_slice import SliceCaps, parse_slice_caps
from joblet_agent.domain.quantities import parse_duration, parse_size
from joblet_agent.domain.rbac import Role
from joblet_agent.errors import ErrorCode

DEFAULT_CONFIG_PATH = Path("/etc/joblet/joblet.yml")
DEFAULT_ISOLATED_CIDR = "10.213.0.0/20"
_WEEK_SEC = 7 * 24 * 3600
_MIN_MEMORY = 4 * 1024 * 1024  # jobspec.MIN_MEMORY: below it nothing (not even a shell) starts


class Enforcement(StrEnum):
    REFUSE = "refuse"  # a limit the host cannot enforce fails the job request
    WARN = "warn"  # the job runs; a warning is recorded on it


@dataclass(frozen=True, slots=True)
class JobPolicy:
    default_max_tasks: int = 512
    # A job that asks for no memory limit or timeout gets these (safe defaults: no job takes the
    # host's memory or runs for ever unless it asks to, within the maximums below).
    default_memory_bytes: int | None = 1024**3
    default_timeout_sec: float | None = 24 * 3600.0
    stop_grace_sec: float = 10.0
    max_cpu_percent: int | None = None  # None: every core of the host
    max_memory_bytes: int | None = None  # None: the host's memory
    max_io_bps: int | None = None
    max_tasks: int = 32768
    max_timeout_sec: float | None = None
    unenforceable_limits: Enforcement = Enforcement.REFUSE
    work_bytes: int = 1024**3  # each job's /work filesystem, unless the job asks for another size
    max_work_bytes: int = 64 * 1024**3
    tmp_bytes: int = 64 * 1024 * 1024  # each job's private /tmp (memory-backed, so it counts
    # against the job's memory limit as well)
    max_running: int = 1024  # jobs at once; each needs a user of the pool
    max_upload_bytes: int = 1024**3  # the files one job's upload may hold
    max_upload_entries: int = 100_000  # files, directories and links of one upload
    # An upload's body: whole within this time, and at least this many bytes per second of
    # waiting for the client (after a grace period): a stalled body holds nothing for ever.
    upload_timeout_sec: float = 3600.0
    upload_min_bytes_per_sec: int = 16 * 1024
    max_volume_bytes: int = 1024**4  # a filesystem volume's largest size (memory: the host's)
    # A volume a job names that does not exist is created with this size, for its caller
    # (None: refused instead).
    auto_volume_bytes: int | None = 1024**3
    max_volumes_per_owner: int = 32  # below maintainer; the agent holds 4096 in all
    uid_base: int = 0x7A000000  # the pool's first UID (systemd leaves 0x70000000+ unused)
    # journald keeps at least this many of a job's lines per interval and drops the rest of
    # the interval's (it raises the burst 1x-6x with its free space): one job cannot fill the
    # journal alone. LogRateLimitBurst= and LogRateLimitIntervalSec= of each job's unit.
    log_lines: int = 100_000
    log_interval_sec: float = 60.0
    # An ended job's files (its /work image, its directory) go this long after its end; its
    # record stays until deleted (None: the files stay too). An upload no job took goes after
    # upload_retention.
    work_retention_sec: float | None = 24 * 3600.0
    upload_retention_sec: float = 15 * 60.0
    # What one copy out of a job (`rnx job cp JOB:...`, `cat`) may carry; more is refused.
    max_download_bytes: int = 8 * 1024**3


@dataclass(frozen=True, slots=True)
class LogStreamPolicy:
    """GET /v1/jobs/{id}/logs: each open stream holds a connection and a journalctl process."""

    max: int = 256  # open at once, all callers together
    max_per_caller: int = 64  # one identity's at once (each `rnx job run` follows one)
    write_timeout_sec: float = 60.0  # a client that takes no data for this long is dropped


@dataclass(frozen=True, slots=True)
class Access:
    # Local users' roles on the Unix socket, by group (root is always admin; others need a group).
    local_groups: Mapping[str, Role] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Connections:
    """What one client may hold of the agent's connections, and for how long without progress.

    TCP is open to anyone who can reach the port, certificate or not, so it is capped per
    listener and per peer (an IPv4 address, an IPv6 /64). The local socket has a budget of its
    own, so no TCP flood reaches it; root is never refused there."""

    max_tcp: int = 1024  # TCP connections at once, TLS handshakes included
    max_tcp_per_peer: int = 128  # of those, from one IPv4 address or IPv6 /64
    max_local: int = 256  # local-socket connections at once of users other than root
    max_local_per_user: int = 64  # of those, of one local user
    tls_handshake_timeout_sec: float = 5.0  # asyncio's default is 60 s
    idle_timeout_sec: float = 15.0  # a connection with no request in progress and none arriving
    header_timeout_sec: float = 10.0  # from a request's first byte to the end of its headers
    body_timeout_sec: float = 30.0  # a request body that stops arriving (not paused by us)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    state_dir: Path = Path("/var/lib/joblet")
    pki_dir: Path = Path("/etc/joblet/pki")
    runtimes_dir: Path = Path("/opt/joblet/runtimes")  # <language>/<name>/ (docs/runtimes.md)
    slice: str = "joblet.slice"
    jobs: JobPolicy = JobPolicy()
    all_jobs: SliceCaps = field(default_factory=SliceCaps)  # all jobs together: the slice
    access: Access = Access()
    log_streams: LogStreamPolicy = LogStreamPolicy()
    connections: Connections = Connections()
    # When jobs start: the agent's caps, each owner's quota (domain/capacity.py).
    admission: AdmissionPolicy = field(default_factory=AdmissionPolicy)
    quotas: Quotas = field(default_factory=Quotas)
    # The built-in network of `--network=isolated` jobs (networks.py): NAT out, ports isolated.
    isolated_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network(DEFAULT_ISOLATED_CIDR)  # noqa: RUF009
    # Private or link-local prefixes NAT networks' jobs may reach (none by default: not the
    # host's LAN, a VPN, a cloud's metadata service; docs/networking.md).
    allow_private: tuple[ipaddress.IPv4Network, ...] = ()

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / "jobs"

    @property
    def roots_dir(self) -> Path:
        """The read-only skeletons jobs' root directories are made from, one per content."""
        return self.state_dir / "roots"

    @property
    def database(self) -> Path:
        return self.state_dir / "jobs.sqlite"


def parse_config(data: object, source: str) -> AgentConfig:
    top = Fields(data, f"{source}:", code=ErrorCode.CONFIG)
    state_dir = _absolute(top, "state_dir", "/var/lib/joblet")
    pki_dir = _absolute(top, "pki_dir", "/etc/joblet/pki")
    runtimes_dir = _absolute(top, "runtimes_dir", "/opt/joblet/runtimes")
    slice_name = top.string("slice", "joblet.slice")
    assert slice_name is not None
    if not slice_name.endswith(".slice") or "/" in slice_name:
        raise top.error("slice", slice_name, "a unit name ending in .slice is required")
    jobs = _parse_jobs(top.section("jobs"))
    all_jobs = parse_slice_caps(top.section("all_jobs"))
    access = _parse_access(top.section("access"))
    isolated_cidr, allow_private = _parse_networks(top.section("networks"))
    log_streams = _parse_log_streams(top.section("log_streams"))
    connections = _parse_connections(top.section("connections"))
    admission = parse_admission(top.section("admission"), jobs.max_running)
    quotas = parse_quotas(top.section("quotas"))
    top.reject_unknown()
    return AgentConfig(
        state_dir=state_dir,
        pki_dir=pki_dir,
        runtimes_dir=runtimes_dir,
        slice=slice_name,
        jobs=jobs,
        all_jobs=all_jobs,
        access=access,
        connections=connections,
        isolated_cidr=isolated_cidr,
        allow_private=allow_private,
        log_streams=log_streams,
        admission=admission,
        quotas=quotas,
    )


def _parse_log_streams(section: Fields) -> LogStreamPolicy:
    base = LogStreamPolicy()
    most = section.integer("max", base.max, minimum=1, maximum=100_000)
    per_caller = section.integer("max_per_caller", base.max_per_caller, minimum=1)
    timeout = section.parsed("write_timeout", parse_duration, base.write_timeout_sec)
    assert most is not None and per_caller is not None and timeout is not None
    if per_caller > most:
        raise section.error("max_per_caller", per_caller, f"at most max ({most})")
    section.check_range("write_timeout", timeout, 1, 3600)
    section.reject_unknown()
    return LogStreamPolicy(max=most, max_per_caller=per_caller, write_timeout_sec=timeout)


def _parse_connections(section: Fields) -> Connections:
    base = Connections()

    def count(key: str, default: int, maximum: int) -> int:
        value = section.integer(key, default, minimum=1, maximum=maximum)
        assert value is not None
        return value

    def seconds(key: str, default: float, minimum: float, maximum: float) -> float:
        value = section.parsed(key, parse_duration, default)
        assert value is not None
        return section.check_range(key, value, minimum, maximum)

    max_tcp = count("max_tcp", base.max_tcp, 1_000_000)
    per_peer = count("max_tcp_per_peer", base.max_tcp_per_peer, 1_000_000)
    if per_peer > max_tcp:
        raise section.error("max_tcp_per_peer", per_peer, f"at most max_tcp ({max_tcp})")
    max_local = count("max_local", base.max_local, 1_000_000)
    per_user = count("max_local_per_user", base.max_local_per_user, 1_000_000)
    if per_user > max_local:
        raise section.error("max_local_per_user", per_user, f"at most max_local ({max_local})")
    connections = Connections(
        max_tcp=max_tcp,
        max_tcp_per_peer=per_peer,
        max_local=max_local,
        max_local_per_user=per_user,
        # A handshake is a few round trips: a minute is what an attacker needs, not a client.
        tls_handshake_timeout_sec=seconds(
            "tls_handshake_timeout", base.tls_handshake_timeout_sec, 1, 60
        ),
        idle_timeout_sec=seconds("idle_timeout", base.idle_timeout_sec, 1, 3600),
        header_timeout_sec=seconds("header_timeout", base.header_timeout_sec, 1, 600),
        body_timeout_sec=seconds("body_timeout", base.body_timeout_sec, 1, 3600),
    )
    section.reject_unknown()
    return connections


def _parse_networks(
    section: Fields,
) -> tuple[ipaddress.IPv4Network, tuple[ipaddress.IPv4Network, ...]]:
    from joblet_agent.domain.network import parse_cidr

    text = section.string("isolated_cidr", DEFAULT_ISOLATED_CIDR)
    assert text is not None
    cidr = parse_cidr(section, "isolated_cidr", text)
    allowed = []
    for index, prefix in enumerate(section.string_list("allow_private", most=256)):
        try:
            allowed.append(ipaddress.IPv4Network(prefix))
        except ValueError as exc:
            raise section.error(
                f"allow_private[{index}]", prefix, f"an IPv4 prefix ({exc})"
            ) from None
    section.reject_unknown()
    return cidr, tuple(allowed)


def _absolute(fields: Fields, key: str, default: str) -> Path:
    value = fields.string(key, default)
    assert value is not None
    if not value.startswith("/"):
        raise fields.error(key, value, "an absolute path is required")
    return Path(value)


def _parse_access(section: Fields) -> Access:
    groups = section.string_map("local_groups")
    roles = {r.value for r in Role}
    for group, role in groups.items():
        if role not in roles:
            raise section.error(f"local_groups.{group}", role, f"roles are {', '.join(roles)}")
    section.reject_unknown()
    return Access(local_groups=MappingProxyType({g: Role(r) for g, r in groups.items()}))


def _parse_jobs(section: Fields) -> JobPolicy:
    base = JobPolicy()
    # 3: the smallest task limit a job starts with (jobspec.MIN_TASKS).
    default_tasks = section.integer("default_max_tasks", base.default_max_tasks, minimum=3)
    max_tasks = section.integer("max_tasks", base.max_tasks, minimum=1)
    assert default_tasks is not None and max_tasks is not None
    if default_tasks > max_tasks:
        raise section.error("default_max_tasks", default_tasks, f"at most max_tasks ({max_tasks})")
    grace = section.parsed("stop_grace", parse_duration, base.stop_grace_sec)
    assert grace is not None
    section.check_range("stop_grace", grace, 0, 3600)
    upload_timeout = section.parsed("upload_timeout", parse_duration, base.upload_timeout_sec)
    assert upload_timeout is not None
    if not 1 <= upload_timeout <= _WEEK_SEC:  # NaN too
        raise section.error("upload_timeout", upload_timeout, "from 1s to 7d")
    upload_rate = section.parsed("upload_min_rate", parse_size, base.upload_min_bytes_per_sec)
    assert upload_rate is not None
    section.check_range("upload_min_rate", upload_rate, 1, None)
    log_interval = section.parsed("log_interval", parse_duration, base.log_interval_sec)
    assert log_interval is not None
    if not 1 <= log_interval <= _WEEK_SEC:
        raise section.error("log_interval", log_interval, "from 1s to 7d")
    work_retention = (
        section.parsed("work_retention", parse_duration)
        if section.present("work_retention")
        else base.work_retention_sec
    )
    if work_retention is not None:
        section.check_range("work_retention", work_retention, 1, None)
    upload_retention = section.parsed("upload_retention", parse_duration, base.upload_retention_sec)
    assert upload_retention is not None
    section.check_range("upload_retention", upload_retention, 1, _WEEK_SEC)
    max_memory = section.parsed("max_memory", parse_size)
    default_memory = _default_memory(section, base, max_memory)
    unenforceable = section.string("unenforceable_limits", str(base.unenforceable_limits))
    if unenforceable not in {e.value for e in Enforcement}:
        raise section.error("unenforceable_limits", unenforceable, "allowed: refuse, warn")
    policy = JobPolicy(
        default_max_tasks=default_tasks,
        default_memory_bytes=default_memory,
        default_timeout_sec=section.parsed("default_timeout", parse_duration)
        if section.present("default_timeout")
        else base.default_timeout_sec,
        stop_grace_sec=grace,
        max_cpu_percent=section.integer("max_cpu", None, minimum=1),
        max_memory_bytes=max_memory,
        max_io_bps=section.parsed("max_iobps", parse_size),
        max_tasks=max_tasks,
        max_timeout_sec=section.parsed("max_timeout", parse_duration),
        unenforceable_limits=Enforcement(unenforceable),
        tmp_bytes=section.parsed("tmp_size", parse_size, base.tmp_bytes) or base.tmp_bytes,
        work_bytes=section.parsed("work_size", parse_size, base.work_bytes) or base.work_bytes,
        max_work_bytes=section.parsed("max_work_size", parse_size, base.max_work_bytes)
        or base.max_work_bytes,
        max_running=section.integer("max_running", base.max_running, minimum=1, maximum=65536)
        or base.max_running,
        max_upload_bytes=section.parsed("max_upload_size", parse_size, base.max_upload_bytes)
        or base.max_upload_bytes,
        max_upload_entries=section.integer(
            "max_upload_entries", base.max_upload_entries, minimum=1, maximum=10_000_000
        )
        or base.max_upload_entries,
        upload_timeout_sec=upload_timeout,
        upload_min_bytes_per_sec=upload_rate,
        max_volume_bytes=section.parsed("max_volume_size", parse_size, base.max_volume_bytes)
        or base.max_volume_bytes,
        auto_volume_bytes=section.parsed("auto_volume_size", parse_size)
        if section.present("auto_volume_size")
        else base.auto_volume_bytes,
        max_volumes_per_owner=section.integer(
            "max_volumes_per_owner", base.max_volumes_per_owner, minimum=0, maximum=4096
        )
        or 0,
        uid_base=section.integer("uid_base", base.uid_base, minimum=65536, maximum=0x7FFF0000)
        or base.uid_base,
        log_lines=section.integer("log_lines", base.log_lines, minimum=1, maximum=2**32 - 1)
        or base.log_lines,
        log_interval_sec=log_interval,
        work_retention_sec=work_retention,
        upload_retention_sec=upload_retention,
        max_download_bytes=section.parsed("max_download_size", parse_size, base.max_download_bytes)
        or base.max_download_bytes,
    )
    default_timeout, max_timeout = policy.default_timeout_sec, policy.max_timeout_sec
    if default_timeout is not None and max_timeout is not None and default_timeout > max_timeout:
        if section.present("default_timeout"):
            raise section.error(
                "default_timeout", default_timeout, f"at most max_timeout ({max_timeout:g}s)"
            )
        policy = dataclasses.replace(policy, default_timeout_sec=max_timeout)
    section.reject_unknown()
    return policy


def _default_memory(section: Fields, base: JobPolicy, most: int | None) -> int | None:
    """jobs.default_memory: a size, or null for none (the host's memory is then the cap)."""
    if not section.present("default_memory"):
        value = base.default_memory_bytes
        return value if most is None or value is None else min(value, most)
    value = section.parsed("default_memory", parse_size)
    if value is not None and value < _MIN_MEMORY:
        raise section.error("default_memory", value, f"at least {_MIN_MEMORY} bytes (4M)")
    if value is not None and most is not None and value > most:
        raise section.error("default_memory", value, f"at most max_memory ({most} bytes)")
    return value
