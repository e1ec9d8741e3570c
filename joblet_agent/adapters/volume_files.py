"""A volume's files on the host: its record, its image and the directory it is mounted on.

<state>/volumes/<name>/volume.json   the record (written last on create, first gone on remove)
                      /volume.img    a filesystem volume's sparse ext4 image
                      /data          where PID 1 mounts it
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path

from joblet_agent.adapters.ext4 import make_ext4
from joblet_agent.adapters.trees import discard_tree
from joblet_agent.domain.volume import Volume, VolumeType
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.files import write_atomic

logger = logging.getLogger(__name__)

# system.posix_acl_default (acl(5)): user::rwx, group::rwx, group:<volume's>:rwx, mask::rwx,
# other::---. Every file and directory made under a volume's root inherits an entry for the
# volume's group, with the bits of its create mode, whatever the umask of the program: so the
# next job (another user, in the same group) can read and write it. No setgid bit is needed
# (the agent runs with RestrictSUIDSGID=yes, and jobs too).
_ACL_VERSION = 2
_UNDEFINED = 0xFFFFFFFF
_USER_OBJ, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x04, 0x08, 0x10, 0x20


def default_acl(gid: int) -> bytes:
    entries = (
        (_USER_OBJ, 7, _UNDEFINED),
        (_GROUP_OBJ, 7, _UNDEFINED),
        (_GROUP, 7, gid),
        (_MASK, 7, _UNDEFINED),
        (_OTHER, 0, _UNDEFINED),
    )
    return struct.pack("<I", _ACL_VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)


class VolumeFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def home(self, name: str) -> Path:
        return self.directory / name

    def image(self, name: str) -> Path:
        return self.home(name) / "volume.img"

    def mount_point(self, name: str) -> Path:
        return self.home(name) / "data"

    def load_all(self) -> list[Volume]:
        volumes = []
        if not self.directory.is_dir():
            return []
        for record in sorted(self.directory.glob("*/volume.json")):
            try:
                volumes.append(Volume.from_dict(json.loads(record.read_text())))
            except (ValueError, KeyError) as exc:
                logger.error("volume record %s is unreadable, skipped: %s", record, exc)
        return volumes

    async def create(self, volume: Volume, gid: int) -> None:
        """Its directory, image (filesystem) and mount point; the record last. On failure
        nothing is left."""
        home = self.home(volume.name)
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            home.mkdir(mode=0o700)
        except FileExistsError:
            raise JobletError(
                ErrorCode.CONFLICT, f"name: volume {volume.name!r} already exists"
            ) from None
        try:
            self.mount_point(volume.name).mkdir(mode=0o700)
            if volume.type is VolumeType.FILESYSTEM:
                await _make_image(self.image(volume.name), volume.size_bytes, gid)
            write_atomic(
                home / "volume.json",
                json.dumps(volume.to_dict(), indent=1) + "\n",
                mode=0o600,
                durable=True,
            )
        except BaseException:
            discard_tree(home, "the volume's directory")
            raise

    def save(self, volume: Volume) -> None:
        write_atomic(
            self.home(volume.name) / "volume.json",
            json.dumps(volume.to_dict(), indent=1) + "\n",
            mode=0o600,
            durable=True,
        )

    def remove(self, name: str) -> None:
        home = self.home(name)
        (home / "volume.json").unlink(missing_ok=True)
        # What jobs wrote lives in the image, or in a tmpfs unmounted first; a volume still
        # mounted is left whole (one file system), never emptied through its mount point.
        discard_tree(home, "the volume's directory")

    def prepare_root(self, name: str, gid: int) -> None:
        """Once mounted: the root owned by root and the volume's group, rwx for the group, nothing
        for others, and the default ACL that keeps new entries the group's too."""
        root = self.mount_point(name)
        os.chown(root, 0, gid)
        os.chmod(root, 0o770)  # noqa: S103 - shared by its group on purpose
        os.setxattr(root, "system.posix_acl_default", default_acl(gid))

    def usage(self, name: str) -> int | None:
        """Bytes in use, as the mounted filesystem counts them (None when not mounted)."""
        root = self.mount_point(name)
        if not os.path.ismount(root):
            return None
        st = os.statvfs(root)
        return (st.f_blocks - st.f_bfree) * st.f_frsize


async def _make_image(image: Path, size: int, gid: int) -> None:
    with image.open("xb") as out:
        out.truncate(size)  # sparse: the disk is used as the jobs write
    await make_ext4(image, owner=(0, gid), journal=True)  # a journal: it outlives crashes
