"""Reading an upload's staged tree to copy it into a running job (`rnx job cp ./x JOB:/work/`):
the tree the extractor made and checked (adapters/archive.py), read without following links."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from joblet_agent.adapters.trees import walk_tree
from joblet_agent.domain.job_file import StagedEntry

_CHUNK = 1024 * 1024


class StagedTree:
    def entries(self, tree: Path) -> list[StagedEntry]:
        found = []
        for path in walk_tree(tree):
            st = path.lstat()
            parts = path.relative_to(tree).parts
            if stat.S_ISDIR(st.st_mode):
                found.append(StagedEntry(parts, "directory", stat.S_IMODE(st.st_mode), 0))
            elif stat.S_ISLNK(st.st_mode):
                found.append(StagedEntry(parts, "symlink", 0o777, 0, os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                found.append(StagedEntry(parts, "file", stat.S_IMODE(st.st_mode), st.st_size))
        return sorted(found, key=lambda entry: entry.parts)

    async def chunks(self, path: Path) -> AsyncIterator[bytes]:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            while chunk := await asyncio.to_thread(os.read, fd, _CHUNK):
                yield chunk
        finally:
            os.close(fd)
