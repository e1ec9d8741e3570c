"""An upload's files move into its job's /work image, so that an upload never takes twice its
size on disk. Pure: the helper unit's properties and the program it runs.

`mkfs.ext4 -d` copies a whole tree into an image: until it is done, both copies are on the disk.
Instead the image is made empty and a short helper unit moves the files in: the job's own user
(it owns them), no capabilities, no network, the host's python3 in isolated mode with PID 1's
environment only, the staging tree bound at SOURCE and the image mounted at TARGET by PID 1
(MountImages=, in the helper's namespace only). Each file is copied from its end in chunks, the
source cut short behind each chunk, so the disk holds one copy plus at most a chunk. Links are
moved as links and never followed; hard links stay links; modes and times are kept.
"""

from __future__ import annotations

from joblet_agent.domain.user import JobUser
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property, prop

PREFIX = "joblet-upload-"
PYTHON = "/usr/bin/python3"
SOURCE = "/mnt/upload"
TARGET = "/mnt/work"
CHUNK = 8 * 1024 * 1024

# Run as `python3 -I -S -c MOVER SOURCE TARGET`. No dollar signs: PID 1 expands $VAR in argv.
MOVER = f"""
import os, stat, sys

CHUNK = {CHUNK}
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
source, target = sys.argv[1], sys.argv[2]
linked = {{}}
made = []


def times(path, st):
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def move_file(src, dst, st):
    key = (st.st_dev, st.st_ino)
    if key in linked:
        os.link(linked[key], dst, follow_symlinks=False)
        os.unlink(src)
        return
    os.chmod(src, 0o600, follow_symlinks=False)
    fin = os.open(src, os.O_RDWR | NOFOLLOW)
    fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600)
    try:
        end = os.fstat(fin).st_size
        while end > 0:
            start = (end - 1) // CHUNK * CHUNK
            data = os.pread(fin, end - start, start)
            if len(data) != end - start:
                raise OSError("short read of " + src)
            written = 0
            while written < len(data):
                written += os.pwrite(fout, data[written:], start + written)
            os.ftruncate(fin, start)
            end = start
    finally:
        os.close(fin)
        os.close(fout)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    times(dst, st)
    if st.st_nlink > 1:
        linked[key] = dst
    os.unlink(src)


def move_tree():
    pending = [("", os.lstat(source))]
    while pending:
        relative, st = pending.pop()
        src = os.path.join(source, relative)
        dst = os.path.join(target, relative)
        if relative:
            os.mkdir(dst, 0o700)
            made.append((src, dst, st))
        os.chmod(src, 0o700)
        with os.scandir(src) as entries:
            names = [entry.name for entry in entries]
        for name in names:
            child = os.path.join(relative, name)
            child_st = os.lstat(os.path.join(source, child))
            if stat.S_ISDIR(child_st.st_mode):
                pending.append((child, child_st))
            elif stat.S_ISLNK(child_st.st_mode):
                link = os.path.join(target, child)
                os.symlink(os.readlink(os.path.join(source, child)), link)
                times(link, child_st)
                os.unlink(os.path.join(source, child))
            elif stat.S_ISREG(child_st.st_mode):
                move_file(os.path.join(source, child), os.path.join(target, child), child_st)
            else:
                raise OSError("not a file, directory or link: " + child)
    for src, dst, st in reversed(made):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        times(dst, st)
        os.rmdir(src)


move_tree()
"""


def helper_unit(job_id: str) -> str:
    return f"{PREFIX}{job_id}.service"


def mover_properties(paths: JobPaths, user: JobUser, slice_name: str) -> list[Property]:
    """The helper that moves the job's upload (its staging tree, `paths.work`) into its /work
    image (`paths.work_image`, made empty and owned by `user`)."""
    job_id = paths.root.name
    return [
        prop("Description", f"Joblet: the upload of job {job_id} into its /work"),
        prop("Type", "oneshot"),
        prop("ExecStart", [[PYTHON, [PYTHON, "-I", "-S", "-c", MOVER, SOURCE, TARGET], False]]),
        prop("Environment", []),
        prop("User", user.name),
        prop("Group", user.name),
        prop("StandardInput", "null"),
        prop("StandardOutput", "journal"),
        prop("StandardError", "journal"),
        prop("Slice", slice_name),
        prop("CollectMode", "inactive-or-failed"),
        # The two trees, and nothing else of the job's: its staging tree and its image.
        prop("TemporaryFileSystem", [["/mnt", "mode=0755"]]),
        prop("BindPaths", [[str(paths.work), SOURCE, False, 0]]),
        prop("MountImages", [[str(paths.work_image), TARGET, False, [["root", "nosuid,nodev"]]]]),
        prop("NoNewPrivileges", True),
        prop("CapabilityBoundingSet", 0),
        prop("AmbientCapabilities", 0),
        prop("PrivateNetwork", True),
        prop("RestrictAddressFamilies", [True, ["AF_UNIX"]]),
        prop("PrivateDevices", True),
        prop("DevicePolicy", "closed"),
        prop("PrivateTmp", True),
        prop("ProtectSystem", "strict"),
        prop("ProtectHome", "yes"),
        prop("ProtectKernelTunables", True),
        prop("ProtectKernelModules", True),
        prop("ProtectKernelLogs", True),
        prop("ProtectControlGroups", True),
        prop("RestrictNamespaces", 0),
        prop("RestrictSUIDSGID", True),
        prop("LockPersonality", True),
        prop("MemoryDenyWriteExecute", True),
        prop("SystemCallArchitectures", ["native"]),
        prop("SystemCallFilter", [True, ["@system-service"]]),
        prop("SystemCallErrorNumber", 1),
    ]
