"""Where a job's things are: on the host (under the state directory) and inside the job's root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

# Inside every job's root.
WORK = PurePosixPath("/work")


@dataclass(frozen=True, slots=True)
class JobPaths:
    """A job's directories on the host. Nothing here but `work`'s image is ever in the job's root:
    what privileged helpers read on the job's behalf (its network's set-up) lives beside it."""

    root: PurePosixPath  # /var/lib/joblet/jobs/<id>, 0700 root
    work: PurePosixPath  # staging tree of its /work image, owned by the job's user

    @property
    def work_image(self) -> PurePosixPath:
        return self.root / "work.img"

    @property
    def upload(self) -> PurePosixPath:
        """Root-only: the tree of the job's upload while the job waits to start; its /work then."""
        return self.root / "upload"

    @property
    def secrets(self) -> PurePosixPath:
        return self.root / "secret.env"

    @property
    def network(self) -> PurePosixPath:
        """Root-only: the batch files its network helper unit feeds to ip and nft."""
        return self.root / "net"

    @property
    def end_record(self) -> PurePosixPath:
        """Root-only: PID 1's account of how it ended (units/end_record.py)."""
        return self.root / "end"

    @property
    def channel(self) -> PurePosixPath:
        """Root-only: the socket PID 1 listens on for the job's init (units/exec_channel.py)."""
        return self.root / "exec.sock"

    @property
    def files_channel(self) -> PurePosixPath:
        """Root-only: the same for the helper that reads an ended job's files."""
        return self.root / "files.sock"

    @property
    def kernel_log(self) -> PurePosixPath:
        """Root-only: the kernel's OOM reports about it (cgroup v1 hosts, units/kernel_log.py)."""
        return self.root / "kmsg"

    @classmethod
    def for_job(cls, jobs_dir: PurePosixPath, job_id: str) -> JobPaths:
        root = jobs_dir / job_id
        return cls(root=root, work=root / "work")


# What of the host a job sees at the same path (bound read-only, or the usr-merge links).
_HOST_VISIBLE = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/")


def host_path_of(path: str, paths: JobPaths) -> PurePosixPath | None:
    """The host path a job sees at `path` (absolute, inside its root), or None if it sees none."""
    if path.startswith(f"{WORK}/"):
        return paths.work / path.removeprefix(f"{WORK}/")
    if path.startswith(_HOST_VISIBLE):
        return PurePosixPath(path)
    return None
