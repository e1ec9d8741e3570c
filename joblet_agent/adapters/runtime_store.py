"""The installed runtimes on disk, /opt/joblet/runtimes/<language>/<name>/: reading, installing,
removing. The one module that writes there.

An install streams the archive (which rnx fetched and checked) through the safe extractor into a
staging directory next to the runtimes, hashing it on the way; only a stream of the announced
size and sha256, holding a valid runtime.yml whose mounts all exist inside the tree, is moved
into place, by one rename (an exchange with the old tree when it replaces one). Anything else
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import platform
import stat
import tempfile
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from joblet_agent.adapters.archive_feed import extract_async
from joblet_agent.adapters.trees import discard_tree, walk_tree
from joblet_agent.domain.archive import ExtractLimits
from joblet_agent.domain.runtime import RuntimeSpec, load_runtime_yml
from joblet_agent.domain.runtime_binding import InstalledRuntime, Provenance
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.files import write_atomic

logger = logging.getLogger(__name__)

RUNTIME_YML = "runtime.yml"
STAGING = ".staging"
# Written by the installer beside runtime.yml: which archive this tree came from, so a rebuilt
# archive of the same release is told apart from the installed one.
INSTALL_RECORD = ".joblet-install.json"
# A JDK or an ML stack is a few hundred MB unpacked; these bound a hostile archive. Archives are
# tar.gz (runtimes/build.py): the gzip is inflated by the extractor, counted against the tar
# stream's bound (files, plus a header and padding of a few KiB per entry).
MAX_ARCHIVE_BYTES = 8 * 1024**3
_MAX_FILES_BYTES = 16 * 1024**3
_MAX_ENTRIES = 500_000
LIMITS = ExtractLimits(
    max_bytes=_MAX_FILES_BYTES,
    max_entries=_MAX_ENTRIES,
    absolute_links=False,
    max_stream_bytes=_MAX_FILES_BYTES + _MAX_ENTRIES * 4096,
    gzip=True,
)
# Installs unpacking at once (maintainers'); their own threads, not the loop's default ones.
_UNPACKING_THREADS = 2
_MACHINE_TO_DEBIAN = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "i686": "i386",
    "ppc64le": "ppc64el",
    "riscv64": "riscv64",
    "s390x": "s390x",
}
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def host_architecture() -> str:
    machine = platform.machine()
    return _MACHINE_TO_DEBIAN.get(machine, machine)


class RuntimeDirectory:
    """The RuntimeCatalog port over a directory of runtimes."""

    def __init__(self, root: Path, *, arch: str | None = None) -> None:
        self.root = root
        self.arch = arch or host_architecture()
        # runtime.yml (path -> (stat key, parsed)): submit reads runtimes on every job.
        self._cache: dict[Path, tuple[tuple[int, int, int], InstalledRuntime | None]] = {}
        self._unpacking = ThreadPoolExecutor(
            max_workers=_UNPACKING_THREADS, thread_name_prefix="joblet-runtime"
        )

    def prepare(self) -> None:
        """At start-up: the directory exists; installs cut short by a crash are cleared (or,
        when they cannot be, logged and left: that never stops the agent)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.root.chmod(0o755)  # the agent's umask is 0077; jobs' users must traverse it
        discard_tree(self.root / STAGING, "the unfinished runtime installs")

    def installed(self) -> list[InstalledRuntime]:
        found: list[InstalledRuntime] = []
        for yml in sorted(self.root.glob(f"[!.]*/[!.]*/{RUNTIME_YML}")):
            runtime = self._load(yml)
            if runtime is not None:
                found.append(runtime)
        return found

    def find(self, name: str) -> InstalledRuntime | None:
        return next((r for r in self.installed() if r.name == name), None)

    def _load(self, yml: Path) -> InstalledRuntime | None:
        try:
            st = yml.lstat()
        except OSError:
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._cache.get(yml)
        if cached and cached[0] == key:
            return cached[1]
        runtime: InstalledRuntime | None = None
        try:
            if not stat.S_ISREG(st.st_mode):
                raise JobletError(ErrorCode.INVALID, f"{yml}: not a regular file")
            spec = load_runtime_yml(yml.read_text(), str(yml))
            directory = yml.parent
            if (directory.parent.name, directory.name) != (spec.language, spec.name):
                raise JobletError(
                    ErrorCode.INVALID,
                    f"{yml}: says {spec.language}/{spec.name} but lies in "
                    f"{directory.parent.name}/{directory.name}",
                )
            check_tree(Path(directory), spec)
            sha256, provenance = _read_install_record(directory)
            runtime = InstalledRuntime(spec, PurePosixPath(directory), sha256, provenance)
        except (JobletError, OSError, UnicodeDecodeError) as exc:
            logger.warning("ignoring runtime %s: %s", yml.parent, exc)
        self._cache[yml] = (key, runtime)
        return runtime

    async def install(
        self,
        name: str,
        chunks: AsyncIterator[bytes],
        *,
        size: int,
        sha256: str,
        approve: Callable[[RuntimeSpec], None],
        provenance: Provenance | None = None,
    ) -> InstalledRuntime:
        """`approve` sees the unpacked runtime.yml before anything is moved into place (RBAC,
        runtimes in use); it raises to refuse. `provenance` is recorded beside runtime.yml."""
        if size > MAX_ARCHIVE_BYTES:
            raise JobletError(
                ErrorCode.TOO_LARGE,
                f"size: {size} bytes; runtime archives are at most {MAX_ARCHIVE_BYTES}",
            )
        staging = self.root / STAGING
        staging.mkdir(parents=True, exist_ok=True, mode=0o700)
        unpacked = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=staging))
        try:
            await _unpack(
                chunks, unpacked, name=name, size=size, sha256=sha256, executor=self._unpacking
            )
            yml = unpacked / RUNTIME_YML
            if not yml.is_file() or yml.is_symlink():
                raise JobletError(
                    ErrorCode.INVALID, f"runtime archive {name}: no {RUNTIME_YML} at its top"
                )
            spec = load_runtime_yml(yml.read_text(), f"{name}: {RUNTIME_YML}")
            if spec.name != name:
                raise JobletError(
                    ErrorCode.INVALID,
                    f"runtime archive {name}: its {RUNTIME_YML} names {spec.name!r}",
                )
            if spec.architectures and self.arch not in spec.architectures:
                raise JobletError(
                    ErrorCode.UNSUPPORTED,
                    f"runtime {name} is built for {', '.join(spec.architectures)}; this host "
                    f"is {self.arch}",
                )
            check_tree(unpacked, spec)
            _record_install(unpacked, sha256=sha256, size=size, provenance=provenance)
            _open_for_jobs(unpacked)
            approve(spec)
            final = self._place(unpacked, spec)
        finally:
            discard_tree(unpacked, "the runtime staging tree")  # the new tree, or the replaced one
        logger.info("installed runtime %s %s at %s", spec.name, spec.release, final)
        runtime = self._load(final / RUNTIME_YML)
        assert runtime is not None
        return runtime

    def _place(self, unpacked: Path, spec: RuntimeSpec) -> Path:
        other = self.find(spec.name)
        if other is not None and other.spec.language != spec.language:
            raise JobletError(
                ErrorCode.CONFLICT,
                f"runtime {spec.name} is installed as a {other.spec.language} runtime; "
                "names are unique across languages",
                hint=f"rnx runtime remove {spec.name} first",
            )
        language = self.root / spec.language
        language.mkdir(exist_ok=True, mode=0o755)
        language.chmod(0o755)
        final = language / spec.name
        if final.exists():
            # One step: a job starting meanwhile sees the old tree or the new, never neither.
            _exchange(unpacked, final)
        else:
            unpacked.chmod(0o755)
            os.rename(unpacked, final)
        final.chmod(0o755)
        return final

    def remove(self, runtime: InstalledRuntime) -> None:
        """Out of the catalogue by one rename, then deleted."""
        staging = self.root / STAGING
        staging.mkdir(parents=True, exist_ok=True, mode=0o700)
        doomed = Path(tempfile.mkdtemp(prefix=f"{runtime.name}-removed-", dir=staging))
        os.rename(Path(runtime.directory), doomed / "tree")
        discard_tree(doomed, "the removed runtime")
        with contextlib.suppress(OSError):
            Path(runtime.directory).parent.rmdir()  # the language's directory, if now empty
        logger.info("removed runtime %s", runtime.name)


async def _unpack(
    chunks: AsyncIterator[bytes],
    dest: Path,
    *,
    name: str,
    size: int,
    sha256: str,
    executor: ThreadPoolExecutor,
) -> None:
    digest = hashlib.sha256()
    received = 0

    async def checked() -> AsyncIterator[bytes]:
        nonlocal received
        async for chunk in chunks:
            received += len(chunk)
            if received > size:
                raise JobletError(
                    ErrorCode.INVALID,
                    f"runtime archive {name}: longer than the announced {size} bytes",
                )
            digest.update(chunk)
            yield chunk

    def tampered() -> JobletError | None:
        if received != size or digest.hexdigest() == sha256.lower():
            return None
        return JobletError(
            ErrorCode.INVALID,
            f"runtime archive {name}: sha256 {digest.hexdigest()} does not match the expected "
            f"{sha256.lower()}: tampered with or damaged; nothing was installed",
        )

    try:
        await extract_async(
            checked(), dest, LIMITS, what=f"runtime archive {name}", executor=executor
        )
    except JobletError as refused:
        # A damaged archive often breaks the gzip or the tar too; the whole stream was read
        # (refusals read on to the end), so say what it is: not the archive announced.
        raise (tampered() or refused) from None
    if received != size:
        raise JobletError(
            ErrorCode.INVALID,
            f"runtime archive {name}: {received} bytes received, {size} announced",
        )
    if (error := tampered()) is not None:
        raise error


def _record_install(tree: Path, *, sha256: str, size: int, provenance: Provenance | None) -> None:
    """Replaces whatever the archive put under that name: only the installer writes it."""
    record = {"sha256": sha256.lower(), "size": size}
    if provenance is not None:
        record |= provenance.to_dict()
    write_atomic(tree / INSTALL_RECORD, json.dumps(record), mode=0o644, durable=True)


def _read_install_record(directory: Path) -> tuple[str | None, Provenance | None]:
    """(the archive's sha256, where it came from); (None, None) for a tree not installed
    through the API. Records of older agents hold only sha256 and size."""
    try:
        record = json.loads((directory / INSTALL_RECORD).read_text())
    except (OSError, ValueError):
        return None, None
    if not isinstance(record, dict):
        return None, None
    sha256 = record.get("sha256")
    return (sha256 if isinstance(sha256, str) else None), Provenance.from_dict(record)


def check_tree(directory: Path, spec: RuntimeSpec) -> None:
    """Every mount's source exists inside the tree (after symlinks) and so does every selective
    entry. Nothing else is asked of the tree: it is data for its jobs, and nothing privileged
    ever runs from it (units/network.py, units/end_record.py)."""
    top = directory.resolve()
    for index, mount in enumerate(spec.mounts):
        where = f"{RUNTIME_YML}: mounts[{index}]"
        source = (directory / mount.source).resolve()
        if source != top and top not in source.parents:
            raise JobletError(
                ErrorCode.INVALID, f"{where}.source: {mount.source!r} leads outside the runtime"
            )
        if not source.exists():
            raise JobletError(
                ErrorCode.INVALID, f"{where}.source: {mount.source!r} is not in the runtime"
            )
        for entry in mount.selective or ():
            path = source / entry
            if not path.exists() or top not in path.resolve().parents:
                raise JobletError(
                    ErrorCode.INVALID,
                    f"{where}.selective: {entry!r} is not in {mount.source!r} of the runtime",
                )


def _open_for_jobs(tree: Path) -> None:
    """Readable by every job's user, writable by none: runtimes are shared by all their jobs.
    (The extractor already dropped setuid, setgid and sticky bits.)"""
    for path in (tree, *walk_tree(tree)):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        wanted = (mode & 0o755) | (0o555 if stat.S_ISDIR(st.st_mode) else 0o444)
        if wanted != mode:
            path.chmod(wanted)


def _exchange(a: Path, b: Path) -> None:
    """renameat2(RENAME_EXCHANGE): swap two directories atomically (Linux 3.15+)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    result = libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(b))
