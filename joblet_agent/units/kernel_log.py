"""The kernel's own report of an OOM kill, for cgroup v1 hosts. Pure: a helper unit's properties,
and the reading of what it printed.

systemd (252 at least) recognises an OOM kill only from cgroup v2's memory.events; on v1 it
reports a plain SIGKILL, and the v1 memory cgroup that counted the kill is gone with the unit.
The kernel says so in its log: "oom-kill:...,oom_memcg=/.../joblet-job-<id>.service,..." (rate
limited: ten reports in five seconds host-wide) and, always, "Memory cgroup out of memory: Killed
process <pid> (<comm>) ... UID:<uid> ...". A job's UID is its own among live jobs, so a kill of
that UID while it ran is its. The agent may not read the kernel log (ProtectKernelLogs=, no
CAP_SYSLOG): a short helper unit with CAP_SYSLOG only runs the host's dmesg into a root-only
file (through syslog(2), `--syslog`: the dev sandbox hides /dev/kmsg; the ring buffer is one).
Nothing of the job's is in it: no root of the job's, a fixed environment, a fixed argv.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

from joblet_agent.units.properties import Property, prop

DMESG = "/usr/bin/dmesg"
HELPER_PREFIX = "joblet-kmsg-"
CAP_SYSLOG = 34
# Kernel timestamps (printk's clock) and PID 1's monotonic ones drift apart by far less.
SLACK_SEC = 2.0

_STAMP = re.compile(r"^\[\s*(\d+)\.(\d+)\]\s(.*)$")
_KILLED = re.compile(r"^Memory cgroup out of memory: Killed process \d+ .*\bUID:(\d+)\b")


def helper_unit(job_id: str) -> str:
    return f"{HELPER_PREFIX}{job_id}.service"


def helper_properties(output: PurePosixPath, slice_name: str) -> list[Property]:
    """A oneshot printing the kernel's log (kernel facility only) into `output`, a root-only file
    of the job's directory on the host, opened by PID 1 (truncate:)."""
    return [
        prop("Description", "Joblet: the kernel's OOM reports about a job (cgroup v1)"),
        prop("Type", "oneshot"),
        prop("ExecStart", [[DMESG, [DMESG, "--syslog", "--kernel", "--nopager"], False]]),
        prop("Environment", []),
        prop("StandardInput", "null"),
        prop("StandardOutputFileToTruncate", str(output)),
        prop("StandardError", "journal"),
        prop("Slice", slice_name),
        prop("CollectMode", "inactive-or-failed"),
        prop("CapabilityBoundingSet", 1 << CAP_SYSLOG),
        prop("NoNewPrivileges", True),
        prop("ProtectSystem", "strict"),
        prop("ProtectHome", "yes"),
        prop("PrivateTmp", True),
        prop("PrivateNetwork", True),
        prop("RestrictAddressFamilies", [True, ["AF_UNIX"]]),
        prop("SystemCallArchitectures", ["native"]),
    ]


@dataclass(frozen=True, slots=True)
class Window:
    """When the job ran, in seconds since boot: the clock of the kernel's log."""

    start: float
    end: float

    @classmethod
    def of(cls, start: datetime, end: datetime, *, boot: float) -> Window:
        """From wall-clock times, given the wall-clock time of boot (time() - monotonic())."""
        return cls(start.timestamp() - boot, end.timestamp() - boot)


def reports_oom_kill(log: str, unit: str, uid: int | None, window: Window | None) -> bool:
    """Whether the kernel's log reports an OOM kill in the job's memory cgroup (by its unit's
    name; the limit hit may be its owner's slice's), or of a process of the job's UID while the
    job ran."""
    for line in log.splitlines():
        match = _STAMP.match(line)
        if not match:
            continue
        message = match.group(3)
        if message.startswith("oom-kill:"):
            fields = dict(
                f.partition("=")[::2] for f in message.removeprefix("oom-kill:").split(",")
            )
            # oom_memcg: the group whose limit was hit (the job's, or its owner's slice: then
            # task_memcg, the killed task's, is the job's).
            if any(fields.get(k, "").endswith(f"/{unit}") for k in ("oom_memcg", "task_memcg")):
                return True
        killed = _KILLED.match(message)
        if killed and uid is not None and window is not None and int(killed.group(1)) == uid:
            at = int(match.group(1)) + int(match.group(2)) / 10 ** len(match.group(2))
            if window.start - SLACK_SEC <= at <= window.end + SLACK_SEC:
                return True
    return False
