"""A runtime -> what it adds to a job's world: bind mounts, empty directories, environment.

Pure, like translate.py. A mount whose target is one of the base system's paths (/usr, or an
/etc file of BASE_READ_ONLY) replaces the host's: a runtime built as its own Debian tree binds
its /usr over the job's /usr, so the job sees none of the host's programs or libraries.
A selective mount puts an empty read-only tmpfs at the target and binds only the listed entries
into it. Golden files in tests/unit/golden/ pin the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from joblet_agent.domain.runtime_binding import InstalledRuntime

# Empty directories made for selective mounts and /opt: root-owned, nothing can be added.
TMPFS_OPTIONS = "mode=0755,size=64k,nosuid,nodev"
# The usr-merged links of every job root (job_root.py): /bin/x is /usr/bin/x.
_MERGED = {"/bin": "/usr/bin", "/sbin": "/usr/sbin", "/lib": "/usr/lib", "/lib64": "/usr/lib64"}


@dataclass(frozen=True, slots=True)
class RuntimeMounts:
    read_only: tuple[tuple[str, str], ...] = ()  # (host source, job path)
    writable: tuple[tuple[str, str], ...] = ()
    empty: tuple[str, ...] = ()  # job paths covered by an empty tmpfs first
    replaces: frozenset[str] = frozenset()  # base paths the runtime provides itself

    def host_path_of(self, path: str) -> tuple[bool, PurePosixPath | None]:
        """(covered, host path): whether the runtime decides what the job sees at `path`, and
        the host file behind it (None: nothing is there)."""
        path = _unmerged(path)
        best: tuple[str, str] | None = None
        for source, target in self.read_only + self.writable:
            if (path == target or path.startswith(target + "/")) and (
                best is None or len(target) > len(best[1])
            ):
                best = (source, target)
        if best is not None:
            return True, PurePosixPath(best[0] + path.removeprefix(best[1]))
        if any(path == d or path.startswith(d + "/") for d in self.empty):
            return True, None
        return False, None


def _unmerged(path: str) -> str:
    for link, real in _MERGED.items():
        if path == link or path.startswith(link + "/"):
            return real + path.removeprefix(link)
    return path


def runtime_mounts(runtime: InstalledRuntime, base_paths: tuple[str, ...]) -> RuntimeMounts:
    read_only: list[tuple[str, str]] = []
    writable: list[tuple[str, str]] = []
    empty: list[str] = []
    for mount in runtime.spec.mounts:
        source = runtime.directory / mount.source if mount.source != "." else runtime.directory
        pairs = (
            [(str(source / e), f"{mount.target}/{e}") for e in mount.selective]
            if mount.selective is not None
            else [(str(source), mount.target)]
        )
        if mount.selective is not None:
            empty.append(mount.target)
        (read_only if mount.readonly else writable).extend(pairs)
    # The job root has an empty /opt: mount points under it go into a per-job tmpfs instead
    # of being created in the shared skeleton.
    if any(t.startswith("/opt/") for _, t in read_only + writable):
        empty.insert(0, "/opt")
    targets = {t for _, t in read_only + writable}
    replaces = frozenset(
        p for p in base_paths if any(p == t or p.startswith(t + "/") for t in targets)
    )
    return RuntimeMounts(tuple(read_only), tuple(writable), tuple(empty), replaces)


def runtime_environment(
    runtime: InstalledRuntime, base: Mapping[str, str], job_env: Mapping[str, str]
) -> dict[str, str]:
    """The base set, the runtime's variables, the job's own (a job may override the runtime's),
    then the runtime's PATH_PREPEND in front of whatever PATH that left."""
    env = {**base, **runtime.spec.environment, **job_env}
    if runtime.spec.path_prepend:
        env["PATH"] = ":".join((*runtime.spec.path_prepend, env["PATH"]))
    return env
