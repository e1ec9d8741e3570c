"""The one place that makes ext4 filesystem images (jobs' /work, filesystem volumes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from joblet_agent.errors import ErrorCode, JobletError


async def make_ext4(
    image: Path, *, owner: tuple[int, int], journal: bool, content: Path | None = None
) -> None:
    """Format the (sparse, already sized) file `image`, its root owned by `owner` (uid, gid),
    holding a copy of the tree `content` if given. No reserved blocks: all of it is its users'."""
    args = ["-q", "-F", "-m", "0", "-E", f"root_owner={owner[0]}:{owner[1]},nodiscard"]
    if not journal:
        args += ["-O", "^has_journal"]
    if content is not None:
        args += ["-d", str(content)]
    proc = await asyncio.create_subprocess_exec(
        "mkfs.ext4",
        *args,
        str(image),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise JobletError(
            ErrorCode.INTERNAL, f"mkfs.ext4 failed for {image}: {err.decode(errors='replace')}"
        )
