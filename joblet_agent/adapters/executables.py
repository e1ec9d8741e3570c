"""Finding a job's program before its unit exists: a typo is a clear error, not a dead unit."""

from __future__ import annotations

import os
from pathlib import Path

from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.units.job import BASE_PATH
from joblet_agent.units.paths import JobPaths, host_path_of
from joblet_agent.units.runtime import RuntimeMounts


def resolve_command(
    command: str, path_env: str | None, paths: JobPaths, runtime: RuntimeMounts | None = None
) -> str:
    """The absolute path, as the job sees it inside its root, of the program to exec; with a
    runtime, what the runtime's mounts put there (its own /usr, say) instead of the host's."""
    search = path_env or BASE_PATH
    if "/" in command:
        if not command.startswith("/"):
            raise JobletError(
                ErrorCode.INVALID,
                f"command: {excerpt(command)} is a relative path; give an absolute path or a "
                "program name found in PATH",
            )
        candidates = [command]
    else:
        candidates = [f"{d.rstrip('/')}/{command}" for d in search.split(":") if d.startswith("/")]
    for candidate in candidates:
        if _executable(candidate, paths, runtime):
            return candidate
    raise JobletError(
        ErrorCode.INVALID,
        f"command: {excerpt(command)} was not found or is not executable in the job's filesystem "
        + ("(the runtime's mounts, /work)" if runtime else "(the host's /usr, and /work)")
        + ("" if "/" in command else f" (PATH={search})"),
    )


def _executable(candidate: str, paths: JobPaths, runtime: RuntimeMounts | None) -> bool:
    covered, on_host = runtime.host_path_of(candidate) if runtime else (False, None)
    if not covered:
        on_host = host_path_of(candidate, paths)
    return on_host is not None and Path(on_host).is_file() and os.access(on_host, os.X_OK)
