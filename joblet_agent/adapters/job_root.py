"""The files of the job world: the shared read-only skeleton root and each job's directories.

The skeleton holds only mount points, the usr-merge links and an /etc of our own (passwd and
group naming the pool's users, an nsswitch.conf that asks nothing but files); everything else is
bound from the host read-only by PID 1 (units/sandbox.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath

from joblet_agent.adapters.executables import resolve_command
from joblet_agent.adapters.ext4 import make_ext4
from joblet_agent.adapters.trees import discard_tree, remove_tree, walk_tree
from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.job import BASE_READ_ONLY
from joblet_agent.domain.user import JobUser, pool
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.units.network import NETWORK_DIR
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.runtime import RuntimeMounts

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


def skeleton_content(config: AgentConfig) -> dict[str, tuple[str, str]]:
    """Relative path -> (kind, data) of every entry of the skeleton: "dir", "file" with its
    text, or "link" with its target. What new jobs' roots are made of on this host now."""
    content: dict[str, tuple[str, str]] = {name: ("dir", "") for name in _MOUNT_POINTS}
    for name in _USR_MERGED:
        host = Path("/", name)
        if host.is_symlink():
            content[name] = ("link", os.readlink(host))  # usr-merge: bin -> usr/bin
        elif host.is_dir():
            raise RuntimeError(f"/{name} is not a link into /usr; this host is not usr-merged")
    for source in BASE_READ_ONLY:
        if source.startswith("/etc/"):
            # Mount points for the read-only binds: a directory for a directory, else a file.
            content[source.removeprefix("/")] = (
                ("dir", "") if Path(source).is_dir() else ("file", "")
            )
    users = pool(config.jobs)
    passwd = [
        "root:x:0:0:root:/root:/usr/sbin/nologin",
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
    ]
    passwd += [f"{u.name}:x:{u.uid}:{u.uid}:Joblet job:/work:/bin/sh" for u in users]
    group = ["root:x:0:", "nogroup:x:65534:"] + [f"{u.name}:x:{u.uid}:" for u in users]
    content["etc/passwd"] = ("file", "\n".join(passwd) + "\n")
    content["etc/group"] = ("file", "\n".join(group) + "\n")
    content["etc/nsswitch.conf"] = ("file", _NSSWITCH)
    content["etc/hostname"] = ("file", "job\n")
    # joblet-init, every job's main process, is bound here (units/exec_channel.py INIT).
    content[".joblet"] = ("dir", "")
    content[".joblet/init"] = ("file", "")
    # A job's network, if it has one, is bound at NETWORK_DIR with its hosts and resolv.conf
    # (kept current by services/networks.py); without one, these links lead nowhere.
    for name in ("hosts", "resolv.conf"):
        content[f"etc/{name}"] = ("link", str(NETWORK_DIR / name))
    return content


def prepare_skeleton(config: AgentConfig) -> Path:
    """The skeleton root for new jobs: roots/<digest of its content>/, built once next to the
    others and renamed into place, never changed or removed while a job's unit names it (its
    RootDirectory=). A running job's /usr, /work, /tmp, ... are mounted on that skeleton's own
    directories: deleting or rebuilding it under the job would detach them (review H7)."""
    content = skeleton_content(config)
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    roots = config.roots_dir
    final = roots / digest
    if final.is_dir():
        logger.info("job root skeleton %s is current", final)
        return final
    roots.mkdir(mode=0o755, parents=True, exist_ok=True)
    roots.chmod(0o755)
    staging = roots / f".build-{uuid.uuid4().hex[:12]}"
    staging.mkdir(mode=0o755)
    for relative, (kind, data) in sorted(content.items()):
        path = staging / relative
        if kind == "dir":
            path.mkdir(mode=0o755)
        elif kind == "link":
            path.symlink_to(data)
        else:
            path.write_text(data)
    _open_to_all(staging)
    staging.rename(final)
    logger.info("job root skeleton ready at %s", final)
    return final


def collect_skeletons(config: AgentConfig, keep: set[str]) -> None:
    """Remove the skeletons (and the unversioned `root` of agents before them) that no unit
    names any more; `keep` holds every loaded job unit's RootDirectory and the current one.
    A skeleton that cannot be removed is logged and left: it never stops the agent."""
    candidates = [config.state_dir / name for name in ("root", "root.new", "root.old")]
    if config.roots_dir.is_dir():
        candidates += sorted(config.roots_dir.iterdir())
    for path in candidates:
        if str(path) in keep or not (path.is_dir() and not path.is_symlink()):
            continue
        try:
            shutil.rmtree(path)  # ours: a few directories and files, no job's content
        except OSError as exc:
            logger.warning("could not remove the old job root skeleton %s: %s", path, exc)
        else:
            logger.info("removed the job root skeleton %s: no job uses it", path)


class JobDirectories:
    """Creates and removes jobs' directories and /work images (the JobFiles port)."""

    def stage(self, paths: JobPaths, *, upload: Path | None, secrets: str | None) -> None:
        """<id>/ (root only), with the upload's tree in upload/ and the secrets: what waits with
        a job until it starts (a queued job waits across agent restarts and reboots)."""
        Path(paths.root).mkdir(mode=0o700)
        if upload is not None:
            upload.rename(Path(paths.upload))  # both under the state directory: a move
        if secrets is not None:
            self.write_secrets(paths, secrets)

    async def create(
        self,
        paths: JobPaths,
        user: JobUser,
        *,
        workdir: str | None,
        work_bytes: int,
        upload: Path | None = None,
    ) -> None:
        """work/ in <id>/ (JobDirectories.stage made <id>/), the staging tree of what /work
        starts with (its working directory; an upload's tree, moved here and given to the job's
        user); work.img, a sparse ext4 image of work_bytes. Without an upload mkfs.ext4 -d copies
        the tree in; with one the image is made empty, and the upload's helper unit moves the
        files in (units/upload.py): a copy of a large tree would take twice its size on disk."""
        # A thread: an upload's tree may have many entries to chown.
        image = await asyncio.to_thread(
            _directories_and_image, paths, user, workdir, work_bytes, upload
        )
        # No journal: the filesystem lives as long as the job. Root owner: the job's user.
        content = None if upload is not None else Path(paths.work)
        await make_ext4(image, owner=(user.uid, user.uid), journal=False, content=content)

    async def finish(self, paths: JobPaths, *, flush: bool) -> None:
        """Once the image holds /work's first contents, the staging tree goes: the job uses the
        image, and a tree it sent must not stay under the state directory for the agent to walk
        again. `flush`: the image is on disk before this returns."""
        await asyncio.to_thread(remove_tree, Path(paths.work))
        if flush:
            await asyncio.to_thread(_flush, Path(paths.work_image))

    def remove(self, paths: JobPaths) -> None:
        discard_tree(Path(paths.root), "the job's directory")

    def find_program(
        self, command: str, path_env: str | None, paths: JobPaths, runtime: RuntimeMounts | None
    ) -> str:
        return resolve_command(command, path_env, paths, runtime)

    def write_secrets(self, paths: JobPaths, text: str) -> None:
        """Created root-only: mode 0600 from the first byte, never widened afterwards."""
        fd = os.open(paths.secrets, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)

    def forget_secrets(self, paths: JobPaths) -> None:
        Path(paths.secrets).unlink(missing_ok=True)

    def holding_secrets(self, jobs_dir: PurePosixPath) -> list[str]:
        return sorted(p.parent.name for p in Path(jobs_dir).glob("*/secret.env"))

    def read_text(self, path: PurePosixPath) -> str | None:
        try:
            with open(path, errors="replace") as text:
                return text.read()
        except OSError:
            return None

    def take_text(self, path: PurePosixPath) -> str | None:
        try:
            return self.read_text(path)
        finally:
            Path(path).unlink(missing_ok=True)


def _directories_and_image(
    paths: JobPaths, user: JobUser, workdir: str | None, work_bytes: int, upload: Path | None
) -> Path:
    Path(paths.root).mkdir(mode=0o700, exist_ok=True)
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


def _flush(image: Path) -> None:
    """Write what mkfs left in the page cache to disk now, in the agent's own cgroup: else the
    loop attach of the job's /work (LOOP_CONFIGURE syncs its backing file) does it inside the
    job's cgroup, throttled by its IO limit, holding the lock every other job's start waits for."""
    fd = os.open(image, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
