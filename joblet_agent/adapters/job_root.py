"""The files of the job world: the shared read-only skeleton root and each job's directories.

The skeleton holds only mount points, the usr-merge links and an /etc of our own (passwd and
group naming the pool's users, an nsswitch.conf that asks nothing but files); everything else is
bound from the host read-only by PID 1 (units/sandbox.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

from joblet_agent.adapters.ext4 import make_ext4
from joblet_agent.adapters.userdb import pool
from joblet_agent.config import AgentConfig
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.trees import discard_tree, remove_tree, walk_tree
from joblet_agent.units.network import NETWORK_DIR
from joblet_agent.units.paths import JobPaths, JobUser
from joblet_agent.units.sandbox import BASE_READ_ONLY

logger = logging.getLogger(__name__)

_MOUNT_POINTS = (
    "usr",
    "etc",
    "dev",
    "proc",
    "sys",
    "tmp",
    "run",
    "work",
    "volumes",
    "opt",  # runtimes' mounts under /opt land in a per-job tmpfs here (units/runtime.py)
    "var",
    "root",
    "home",
)
_USR_MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"


def prepare_skeleton(config: AgentConfig) -> None:
    """(Re)build the skeleton root next to the old one and swap it in: jobs never see it half."""
    final = config.job_root
    staging = final.with_name(final.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o755, parents=True)
    for name in _MOUNT_POINTS:
        (staging / name).mkdir(mode=0o755)
    for name in _USR_MERGED:
        host = Path("/", name)
        if host.is_symlink():
            (staging / name).symlink_to(os.readlink(host))  # usr-merge: bin -> usr/bin
        elif host.is_dir():
            raise RuntimeError(f"/{name} is not a link into /usr; this host is not usr-merged")
    etc = staging / "etc"
    for source in BASE_READ_ONLY:
        if source.startswith("/etc/"):
            target = etc / source.removeprefix("/etc/")
            # Mount points for the read-only binds: a directory for a directory, else a file.
            if Path(source).is_dir():
                target.mkdir(mode=0o755)
            else:
                target.touch(mode=0o644)
    users = pool(config.jobs)
    passwd = [
        "root:x:0:0:root:/root:/usr/sbin/nologin",
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
    ]
    passwd += [f"{u.name}:x:{u.uid}:{u.uid}:Joblet job:/work:/bin/sh" for u in users]
    group = ["root:x:0:", "nogroup:x:65534:"] + [f"{u.name}:x:{u.uid}:" for u in users]
    (etc / "passwd").write_text("\n".join(passwd) + "\n")
    (etc / "group").write_text("\n".join(group) + "\n")
    (etc / "nsswitch.conf").write_text(_NSSWITCH)
    (etc / "hostname").write_text("job\n")
    # A job's network, if it has one, is bound at NETWORK_DIR with its hosts and resolv.conf
    # (kept current by services/networks.py); without one, these links lead nowhere.
    for name in ("hosts", "resolv.conf"):
        (etc / name).symlink_to(NETWORK_DIR / name)
    _open_to_all(staging)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    logger.info("job root skeleton ready at %s", final)


class JobDirectories:
    """Creates and removes jobs' directories and /work images (the JobFiles port)."""

    async def create(
        self,
        paths: JobPaths,
        user: JobUser,
        *,
        workdir: str | None,
        work_bytes: int,
        upload: Path | None = None,
    ) -> None:
        """<id>/ and meta/ (root only); work/, the staging directory whose tree becomes the
        root of work.img: a sparse ext4 image of work_bytes, made by mkfs.ext4 -d. Once the
        image holds it, the staging tree goes: the job uses the image, and a tree it sent
        must not stay under the state directory for the agent to walk again."""
        # A thread: an upload's tree may have many entries to chown.
        image = await asyncio.to_thread(
            _directories_and_image, paths, user, workdir, work_bytes, upload
        )
        # No journal: the filesystem lives as long as the job. Root owner: the job's user.
        await make_ext4(image, owner=(user.uid, user.uid), journal=False, content=Path(paths.work))
        await asyncio.to_thread(remove_tree, Path(paths.work))

    def remove(self, paths: JobPaths) -> None:
        discard_tree(Path(paths.root), "the job's directory")


def _directories_and_image(
    paths: JobPaths, user: JobUser, workdir: str | None, work_bytes: int, upload: Path | None
) -> Path:
    for directory in (paths.root, paths.meta):
        Path(directory).mkdir(mode=0o700)
    work = Path(paths.work)
    if upload is None:
        work.mkdir(mode=0o700)
    else:
        upload.rename(work)  # both under the state directory: a move, not a copy
        _give_to(work, user)
    current = work
    for part in Path(workdir or "").parts:
        current /= part
        try:
            current.mkdir(mode=0o700)
        except FileExistsError:
            # An uploaded directory is fine; an uploaded link is never followed by root here.
            if current.is_symlink() or not current.is_dir():
                raise JobletError(
                    ErrorCode.INVALID,
                    f"workdir: {workdir!r}: {part!r} in the upload is not a directory",
                ) from None
            continue
        os.chown(current, user.uid, user.uid)  # mkfs -d copies owners and modes
    image = Path(paths.work_image)
    with image.open("xb") as out:
        out.truncate(work_bytes)  # sparse: it takes what the job writes, up to the cap
    return image


def _give_to(tree: Path, user: JobUser) -> None:
    """Uploaded files become the job's user's (lchown: links are never followed)."""
    os.lchown(tree, user.uid, user.uid)
    for path in walk_tree(tree):
        os.lchown(path, user.uid, user.uid)


def _open_to_all(root: Path) -> None:
    """The agent runs with UMask=0077; the job's user must read and traverse its whole root."""
    for path in (root, *root.rglob("*")):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
