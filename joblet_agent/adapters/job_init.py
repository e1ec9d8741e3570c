"""Where this host's joblet-init is: the program every job's unit runs first (init/joblet-init.c,
units/exec_channel.py). PID 1 binds it read-only into each job's root."""

from __future__ import annotations

import os
from pathlib import Path

from joblet_agent.errors import ErrorCode, JobletError

# The Debian package's place (.static: lintian then knows a static binary is meant); a working
# tree's build (make init) comes first, so the dev sandbox runs the tree's own.
INSTALLED = Path("/usr/lib/joblet/joblet-init.static")
_TREE = Path(__file__).resolve().parents[2] / "build" / "joblet-init"


def locate_init() -> Path:
    for candidate in (_TREE, INSTALLED):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise JobletError(
        ErrorCode.CONFIG,
        f"joblet-init is missing: neither {INSTALLED} nor {_TREE} is an executable file",
        hint="reinstall the joblet package, or run `make init` in a working tree",
    )
