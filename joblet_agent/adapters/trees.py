"""Walking and removing directory trees that came from outside: uploads, jobs' /work trees,
runtime archives. They may be deep (an old agent accepted members 2,000 directories down), so
both are iterative: CPython 3.11's shutil.rmtree and os.walk recurse once per level and raise
RecursionError near 1,000, which once stopped every agent start (review H2). Links are never
followed.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def walk_tree(top: Path) -> Iterator[Path]:
    """Every entry below `top` (not `top` itself), each directory before what it holds.
    Paths grow with depth: meant for trees the extractor made (archive.MAX_MEMBER_DEPTH)."""
    pending = [top]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                path = directory / entry.name
                yield path
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)


def remove_tree(top: Path) -> None:
    """`rm -rf --one-file-system top`, at any depth: one directory descriptor open at a time and
    names relative to it, so neither the stack nor PATH_MAX limits the depth. Raises OSError
    (a mount point inside is left, and its parents: EBUSY); a missing `top` is no error."""
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(top)
        return
    fd = os.open(top, _DIRECTORY)
    # Per level below top: the name we came down by, the directory above it (to check that
    # ".." leads back there) and its subdirectories still to empty.
    above: list[tuple[str, tuple[int, int], list[str]]] = []
    try:
        pending = _clear(fd, st.st_dev)
        while True:
            if pending:
                name = pending.pop()
                child = os.open(name, _DIRECTORY, dir_fd=fd)
                here = os.fstat(fd)
                above.append((name, (here.st_dev, here.st_ino), pending))
                os.close(fd)
                fd = child
                pending = _clear(fd, st.st_dev)
                continue
            if not above:
                break
            name, expected, pending = above.pop()
            parent = os.open("..", _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = parent
            there = os.fstat(fd)
            if (there.st_dev, there.st_ino) != expected:
                raise OSError(errno.ESTALE, "the tree moved while it was being removed", str(top))
            os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(top)


def _clear(fd: int, device: int) -> list[str]:
    """Removes what the directory holds but its non-empty subdirectories, which it returns."""
    full: list[str] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.name, dir_fd=fd)
                continue
            if entry.stat(follow_symlinks=False).st_dev != device:
                continue  # a mount point: never descended into; removing above it fails
            try:
                os.rmdir(entry.name, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                full.append(entry.name)
    return full


def discard_tree(top: Path, what: str) -> bool:
    """remove_tree() where a failure must not stop the caller (start-up clean-up, a refused
    upload): logged with `what`; returns whether the tree is gone."""
    try:
        remove_tree(top)
    except OSError as exc:
        logger.warning("could not remove %s %s: %s", what, top, exc)
        return False
    return True
