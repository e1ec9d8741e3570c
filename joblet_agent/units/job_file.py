"""The helper that reads an ended job's files: the job's own init, serving file requests only,
in a sandbox like the job's with its /work mounted read-only. Pure.

An ended job's /work is its ext4 image on the host (until its record is deleted); the agent
never mounts it nor opens anything of it. `joblet-files-<id>.service` does, inside a mount
namespace of its own (`MountImages=`, read-only), as the job's user, with the job's root
skeleton, no network, the job profile's seccomp filter and no capabilities, and small limits
of its own: the same `joblet-init --serve` answers the same file requests as a running job's
init, on a socket (`joblet-files-<id>.socket`) in the job's root-only directory, made in the
same start call and bound to it. It ends after FILES_IDLE_SEC without a request; the next one
starts it again. Nothing of it runs privileged.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.user import JobUser
from joblet_agent.units.exec_channel import (
    FILES_IDLE_SEC,
    INIT,
    INIT_NAME,
    files_socket,
    files_unit,
    init_bind,
)
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property, prop
from joblet_agent.units.sandbox import sandbox_properties

HELPER_MEMORY = 64 * 1024 * 1024
HELPER_TASKS = 16  # init and one handler per request at once
HELPER_RUNTIME_USEC = 30 * 60 * 1_000_000  # a bound: it ends long before, idle
HELPER_TMP = 1024 * 1024


def files_helper(
    job_id: str,
    paths: JobPaths,
    host: HostInfo,
    user: JobUser,
    *,
    root: PurePosixPath,
    init: PurePosixPath,
    slice_name: str,
) -> tuple[str, list[Property], list[tuple[str, list[Property]]]]:
    """(unit, its properties, [its socket]) for StartTransientUnit."""
    unit = files_unit(job_id)
    socket, socket_props = files_socket(job_id, paths.files_channel)
    props = [
        prop("Description", f"Joblet: the files of ended job {job_id}"),
        prop("Type", "exec"),
        prop("ExecStart", [[str(INIT), [INIT_NAME, "--serve", str(FILES_IDLE_SEC)], False]]),
        prop("Environment", []),
        prop("WorkingDirectory", "/work"),
        prop("StandardInput", "null"),
        prop("StandardOutput", "journal"),
        prop("StandardError", "journal"),
        prop("Slice", slice_name),
        prop("CollectMode", "inactive-or-failed"),
        prop("Requires", [socket]),
        prop("After", [socket]),
        prop("KillMode", "control-group"),
        prop("RuntimeMaxUSec", HELPER_RUNTIME_USEC),
        prop("MemoryAccounting", True),
        prop("TasksAccounting", True),
        prop("MemoryMax", HELPER_MEMORY),
        prop("MemorySwapMax", 0),
        prop("TasksMax", HELPER_TASKS),
        *sandbox_properties(
            host,
            user,
            root=root,
            work_image=paths.work_image,
            tmp_bytes=HELPER_TMP,
            extra_read_only=[init_bind(init)],
            work_read_only=True,
        ),
    ]
    return unit, props, [(socket, socket_props)]
