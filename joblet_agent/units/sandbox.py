"""The default isolation profile of every job: its own root, its own user, no privileges.

Pure data, like translate.py. What each option blocks, and the score this profile gets from
`systemd-analyze security`, are in docs/security.md.
"""

from __future__ import annotations

import socket
from pathlib import PurePosixPath

from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import BASE_READ_ONLY
from joblet_agent.domain.user import JobUser
from joblet_agent.units.paths import WORK
from joblet_agent.units.properties import Property, prop
from joblet_agent.units.runtime import TMPFS_OPTIONS, RuntimeMounts

# Namespace flags systemd knows (RestrictNamespaces= takes the set that stays *allowed*).
NO_NAMESPACES = 0
SECCOMP_ALLOW = ["@system-service"]
# @system-service (systemd 252) still holds the keyring calls and io_uring, whose own bugs and
# reach around seccomp make it a favourite of kernel exploits; the probe suite caught both. It
# holds userfaultfd too: vm.unprivileged_userfaultfd=0 refuses only kernel-mode handling, and
# user-mode handling (UFFD_USER_MODE_ONLY) still lets a job stall its own page faults at will,
# the race-widening tool of many kernel exploits (the probe `userfaultfd-user-mode` found it).
SECCOMP_DENY = [
    "@privileged",
    "@resources",
    "@keyring",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
]


def no_network() -> list[Property]:
    """PrivateNetwork=yes with only loopback, IPAddressDeny=any (not even loopback) and no IP
    sockets: the default, network `none`."""
    return [
        prop("PrivateNetwork", True),
        prop("IPAddressDeny", [[socket.AF_INET, b"\0" * 4, 0], [socket.AF_INET6, b"\0" * 16, 0]]),
        prop("RestrictAddressFamilies", [True, ["AF_UNIX"]]),
    ]


def sandbox_properties(
    host: HostInfo,
    user: JobUser,
    *,
    root: PurePosixPath,
    work_image: PurePosixPath,
    tmp_bytes: int,
    extra_read_only: list[list[object]],
    relax: tuple[str, ...] = (),
    network: list[Property] | None = None,
    runtime: RuntimeMounts | None = None,
    work_read_only: bool = False,
) -> list[Property]:
    """`work_read_only`: /work mounted read-only (an ended job's files, read by a helper)."""
    runtime = runtime or RuntimeMounts()
    # (source, target, ignore if missing, mount flags). A runtime's own tree replaces the host's
    # base paths it covers; its mounts are never optional (a broken runtime fails the start).
    binds_ro: list[list[object]] = [
        [p, p, True, 0] for p in BASE_READ_ONLY if p not in runtime.replaces
    ]
    binds_ro += [[s, t, False, 0] for s, t in runtime.read_only] + extra_read_only
    binds_rw: list[list[object]] = [[s, t, False, 0] for s, t in runtime.writable]
    tmpfs = [["/tmp", f"size={tmp_bytes},mode=1777,nosuid,nodev"]]
    tmpfs += [[d, TMPFS_OPTIONS] for d in runtime.empty]
    props = [
        # The job's world: a read-only skeleton root, the base system bound read-only into it,
        # its own /work, a size-capped private /tmp, a private /dev, /proc showing only itself.
        prop("RootDirectory", str(root)),
        prop("BindReadOnlyPaths", binds_ro),
        *([prop("BindPaths", binds_rw)] if binds_rw else []),
        # /work: the job's own ext4 image, loop-mounted by PID 1 inside the job's namespace only
        # (unmounted, its loop device freed, when the job's last process ends). Not a mount unit:
        # PID 1 rate-limits mount-table events (5/s), which stalled every third start by 0.7 s.
        prop(
            "MountImages",
            [[str(work_image), str(WORK), False, [["root", _work_options(work_read_only)]]]],
        ),
        prop("TemporaryFileSystem", tmpfs),
        prop("MountAPIVFS", True),
        prop("PrivateDevices", True),
        prop("DevicePolicy", "closed"),
        prop("ProtectProc", "invisible"),
        prop("ProcSubset", "pid"),
        prop("ProtectSystem", "strict"),
        prop("ProtectHome", "yes"),
        # Who it is: an unprivileged user of the agent's pool, no way to gain privileges.
        prop("User", user.name),
        prop("Group", user.name),
        prop("PrivateUsers", True),
        prop("NoNewPrivileges", True),
        prop("CapabilityBoundingSet", 0),
        prop("AmbientCapabilities", 0),
        prop("RestrictSUIDSGID", True),
        prop("UMask", 0o077),
        prop("KeyringMode", "private"),
        prop("RemoveIPC", True),
        prop("PrivateIPC", True),
        # What it may ask of the kernel.
        prop("RestrictNamespaces", NO_NAMESPACES),
        prop("SystemCallFilter", [True, SECCOMP_ALLOW]),
        prop("SystemCallFilter", [False, SECCOMP_DENY]),
        prop("SystemCallArchitectures", ["native"]),
        prop("SystemCallErrorNumber", 1),  # EPERM, which programs handle better than SIGSYS
        prop("LockPersonality", True),
        prop("MemoryDenyWriteExecute", "wx-memory" not in relax),
        prop("RestrictRealtime", True),
        prop("ProtectKernelTunables", True),
        prop("ProtectKernelModules", True),
        prop("ProtectKernelLogs", True),
        prop("ProtectControlGroups", True),
        prop("ProtectClock", True),
        prop("ProtectHostname", True),
        prop("NotifyAccess", "none"),
        # The network: by default none (units/network.py; docs/networking.md).
        *(network if network is not None else no_network()),
    ]
    if host.has_private_pids:
        props.append(prop("PrivatePIDs", "yes"))  # PID 1 of its own PID namespace (systemd 257+)
    return props


def _work_options(read_only: bool) -> str:
    return "ro,nosuid,nodev" if read_only else "nosuid,nodev"


def in_job(path: PurePosixPath, workdir: str | None) -> str:
    return str(path / workdir) if workdir else str(path)
