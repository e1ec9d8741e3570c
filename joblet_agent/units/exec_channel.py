"""Every job's init and its exec channel, as unit properties. Pure.

A job's main process is joblet-init (init/joblet-init.c), bound read-only into the job's root
at INIT: it runs the job's command as its child, ends with it, and serves the agent's execs,
attaches and file requests on a listening socket. That socket is a transient socket unit,
`joblet-job-<id>.socket`, created with the job's service in the same StartTransientUnit call:
PID 1 makes it at `/var/lib/joblet/jobs/<id>/exec.sock` (that directory is root's, mode 0700,
and never in any job's root, so only root reaches it and no job reaches another's), and passes
its listening descriptor to the job's service as fd 3 (LISTEN_FDS=1): the service is what the
socket triggers, by name. The job's init accepts on it inside the job's sandbox, so whatever an
exec runs has the job's root, user, namespaces, seccomp filter, no capabilities, and is in the
job's cgroup, counted against its memory, CPU and task limits. No unit per exec: an exec costs a
connection and two forks inside the job.

The socket is bound to the job (BindsTo=): once the job's service stops it stops too, with a
stop job queued at once, so a connection that comes after the job's end can never make PID 1
start the job's service again (a socket's normal job); RemoveOnStop= deletes its file.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from joblet_agent.domain.job import unit_name
from joblet_agent.units.properties import Property, prop

# Inside every job's root: a mount point in the skeleton (adapters/job_root.py), the host's
# joblet-init bound on it read-only.
INIT = PurePosixPath("/.joblet/init")
INIT_NAME = "joblet-init"
# Where the Debian package installs it on the host (adapters/job_init.py finds the one in use).
HOST_INIT = PurePosixPath("/usr/lib/joblet/joblet-init.static")
FILES_PREFIX = "joblet-files-"
# How long the files helper of an ended job waits for another request before it ends.
FILES_IDLE_SEC = 10


def socket_unit(job_id: str) -> str:
    return unit_name(job_id).removesuffix(".service") + ".socket"


def init_bind(host_init: PurePosixPath) -> list[object]:
    """The BindReadOnlyPaths entry that puts the host's joblet-init at INIT in a job's root."""
    return [str(host_init), str(INIT), False, 0]


def init_argv(
    executable: str, argv: tuple[str, ...], *, tty: bool = False, stdin: bool = False
) -> list[str]:
    """init's own argv: its options, then the program to exec (found in the job's root) and
    the argv it gets (argv[0] as the user typed it)."""
    options = (["--tty"] if tty else []) + (["--stdin"] if stdin and not tty else [])
    return [INIT_NAME, *options, "--", executable, *argv]


def channel_dependencies(job_id: str) -> list[Property]:
    """The job's side: its socket listens before it starts (the socket orders itself Before=
    the service it triggers; Requires= pulls it into the same transaction)."""
    socket = socket_unit(job_id)
    return [prop("Requires", [socket]), prop("After", [socket])]


def channel_socket(job_id: str, path: PurePosixPath) -> tuple[str, list[Property]]:
    """The job's channel socket, created (not started) with its service."""
    return (
        socket_unit(job_id),
        [
            prop("Description", f"Joblet: the exec channel of job {job_id}"),
            prop("Listen", [["Stream", str(path)]]),
            prop("SocketMode", 0o600),
            prop("DirectoryMode", 0o700),
            prop("RemoveOnStop", True),
            prop("BindsTo", [unit_name(job_id)]),
            prop("CollectMode", "inactive-or-failed"),
        ],
    )


def files_unit(job_id: str) -> str:
    return f"{FILES_PREFIX}{job_id}.service"


def files_socket(job_id: str, path: PurePosixPath) -> tuple[str, list[Property]]:
    """An ended job's files helper's socket: the same, bound to the helper's service."""
    service = files_unit(job_id)
    return (
        service.removesuffix(".service") + ".socket",
        [
            prop("Description", f"Joblet: reading the files of ended job {job_id}"),
            prop("Listen", [["Stream", str(path)]]),
            prop("SocketMode", 0o600),
            prop("DirectoryMode", 0o700),
            prop("RemoveOnStop", True),
            prop("BindsTo", [service]),
            prop("CollectMode", "inactive-or-failed"),
        ],
    )
