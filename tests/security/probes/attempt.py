"""Attempt ONE forbidden action and say whether it worked: `python3 attempt.py ACTION [ARG...]`.

In the manner of bubblewrap's tests/try-syscall.c. Prints one JSON line
    {"probe": ACTION, "args": [...], "outcome": "blocked" | "escaped" | "error",
     "errno": "EPERM" | null, "detail": "..."}
and exits 0 (blocked), 1 (escaped) or 2 (error: the probe could not tell, or a usage error).

Blocked means the kernel or the sandbox refused (EPERM, EACCES, ENOENT, EROFS, ENETUNREACH, ...),
or the thing is simply not there. Escaped means it worked. Anything else is an error, never a pass.

Jobs run this with `python3 -c "<this file>" ACTION ARG...`, so it must stay standalone: the
standard library and ctypes only, runnable by the host's /usr/bin/python3 as an unprivileged user.

Each action runs in a forked child: a seccomp filter that kills instead of failing (SIGSYS) then
reads as "blocked", and unshare/chroot cannot change the reporting process.

Actions that would change the machine if they escaped (reboot, kexec, modules, swap, the clock)
pass arguments the kernel rejects only AFTER its capability check: the errno then says whether the
check passed (e.g. reboot with a bad magic: EPERM = blocked, EINVAL = escaped), and nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from typing import NamedTuple

# errnos that mean "refused" or "not there".
REFUSALS = {
    errno.EPERM,
    errno.EACCES,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EROFS,
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ENOSYS,
    errno.ESRCH,
    errno.ECONNREFUSED,
    errno.EAFNOSUPPORT,
    errno.ENXIO,
    errno.ENODEV,
}

ACTION_TIMEOUT_SEC = 10  # network probes wait 2 s; nothing else should block

# The system calls Python has no wrapper for, by machine.
SYSCALLS = {
    "x86_64": {
        "reboot": 169,
        "swapon": 167,
        "settimeofday": 164,
        "clock_settime": 227,
        "init_module": 175,
        "finit_module": 313,
        "kexec_load": 246,
        "pivot_root": 155,
        "unshare": 272,
        "add_key": 248,
        "bpf": 321,
        "perf_event_open": 298,
        "userfaultfd": 323,
        "io_uring_setup": 425,
        "ptrace": 101,
        "mount": 165,
        "umount2": 166,
        "sethostname": 170,
        "setdomainname": 171,
        "setrlimit": 160,
        "prlimit64": 302,
        "capget": 125,
        "capset": 126,
        "keyctl": 250,
        "request_key": 249,
        "adjtimex": 159,
        "iopl": 172,
        "ioperm": 173,
        "delete_module": 176,
        "swapoff": 168,
        "acct": 163,
        "quotactl": 179,
        "kexec_file_load": 320,
        "setns": 308,
        "set_mempolicy": 238,
        "mbind": 237,
    },
    "aarch64": {  # the generic table (asm-generic/unistd.h)
        "reboot": 142,
        "swapon": 224,
        "settimeofday": 170,
        "clock_settime": 112,
        "init_module": 105,
        "finit_module": 273,
        "kexec_load": 104,
        "pivot_root": 41,
        "unshare": 97,
        "add_key": 217,
        "bpf": 280,
        "perf_event_open": 241,
        "userfaultfd": 282,
        "io_uring_setup": 425,
        "ptrace": 117,
        "mount": 40,
        "umount2": 39,
        "sethostname": 161,
        "setdomainname": 162,
        "setrlimit": 164,
        "prlimit64": 261,
        "capget": 90,
        "capset": 91,
        "keyctl": 219,
        "request_key": 218,
        "adjtimex": 171,
        "delete_module": 106,
        "swapoff": 225,
        "acct": 89,
        "quotactl": 60,
        "kexec_file_load": 294,
        "setns": 268,
        "set_mempolicy": 237,
        "mbind": 235,
    },
}

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PTRACE_SEIZE = 0x4206
TIOCSTI = 0x5412
KEY_SPEC_PROCESS_KEYRING = -2
BPF_MAP_CREATE = 0
BPF_MAP_TYPE_ARRAY = 2
PERF_TYPE_SOFTWARE = 1
PERF_FLAG_FD_CLOEXEC = 8
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2
MISSING = b"/joblet-probe-does-not-exist"


class Result(NamedTuple):
    outcome: str
    errno: str | None
    detail: str


def errno_name(number: int | None) -> str | None:
    return None if number is None else errno.errorcode.get(number, str(number))


def blocked(detail: str, number: int | None = None) -> Result:
    return Result("blocked", errno_name(number), detail)


def escaped(detail: str, number: int | None = None) -> Result:
    return Result("escaped", errno_name(number), detail)


def error(detail: str, number: int | None = None) -> Result:
    return Result("error", errno_name(number), detail)


def refused(exc: OSError, what: str) -> Result:
    """An OSError from a plain attempt: a refusal is "blocked", any other errno is unexplained."""
    if exc.errno in REFUSALS:
        return blocked(f"{what}: {exc.strerror}", exc.errno)
    return error(f"{what}: unexpected {exc.strerror}", exc.errno)


def syscall(name: str, *args: object) -> int:
    """The raw system call; raises OSError like os.* does. Ints go as longs, bytes as char *."""
    table = SYSCALLS.get(platform.machine())
    if table is None:  # not ENOSYS: that would read as "blocked"
        raise RuntimeError(f"no system call table for {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    converted = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    result = int(libc.syscall(ctypes.c_long(table[name]), *converted))
    if result == -1:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    return result


def past_permission_check(what: str, call: Callable[[], object], past: int) -> Result:
    """For calls whose harmless arguments fail with `past` only once the permission check passed."""
    try:
        call()
    except OSError as exc:
        if exc.errno == past:
            return escaped(f"{what}: the permission check passed (then {exc.strerror})", exc.errno)
        return refused(exc, what)
    return escaped(f"{what} succeeded")


def succeeds(what: str, call: Callable[[], object]) -> Result:
    try:
        value = call()
    except OSError as exc:
        return refused(exc, what)
    return escaped(f"{what} succeeded" + (f": {value}" if isinstance(value, str) else ""))


def close_fd(fd: int) -> str:
    os.close(fd)
    return f"fd {fd}"


ACTIONS: dict[str, Callable[..., Result]] = {}


def action(name: str) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    def register(fn: Callable[..., Result]) -> Callable[..., Result]:
        ACTIONS[name] = fn
        return fn

    return register


# --- Files: the host's secrets, the agent's state, other jobs' data, writable system trees ---


@action("read-file")
def read_file(path: str) -> Result:
    """Only the byte count is reported: the content may be a private key."""

    def read() -> str:
        with open(path, "rb") as f:
            return f"{len(f.read(4096))} bytes read from {path}"

    return succeeds(f"read {path}", read)


@action("list-dir")
def list_dir(path: str) -> Result:
    """An empty listing shows nothing of the host (e.g. ProtectHome=tmpfs), so it is blocked."""
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        return refused(exc, f"list {path}")
    if not names:
        return blocked(f"{path} lists empty here")
    return escaped(f"{path} lists {len(names)} entries: {', '.join(names[:8])}")


@action("read-job-work")
def read_job_work(job_id: str) -> Result:
    """The host's copy of another job's /work: its filesystem image (holding the secret)."""
    return read_file(f"/var/lib/joblet/jobs/{job_id}/work.img")


@action("read-proc-root")
def read_proc_root(pid: str, job_id: str) -> Result:
    """Another job's files through its /proc entry: its root (sandboxed or not) and its cwd."""
    if own_process(pid):
        return blocked(f"pid {pid} is one of this job's own processes here (a private PID space)")
    paths = [
        f"/proc/{pid}/root/work/secret",
        f"/proc/{pid}/cwd/secret",
        f"/proc/{pid}/root/var/lib/joblet/jobs/{job_id}/work/secret",
    ]
    results = [read_file(path) for path in paths]
    if all(r.outcome == "blocked" for r in results):
        return Result("blocked", results[0].errno, "; ".join(r.detail for r in results))
    return next(r for r in results if r.outcome != "blocked")


@action("write")
def write(directory: str, name: str = "") -> Result:
    """Creates a new file in `directory` and removes it again; given a NAME, the file is kept
    under that name, for the caller to look for on the host (a private /tmp may be written)."""
    path = os.path.join(directory, name or f".joblet-probe-{os.getpid()}-{time.monotonic_ns()}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        return refused(exc, f"create a file in {directory}")
    os.write(fd, b"written by a joblet escape probe\n")
    os.close(fd)
    if not name:
        os.unlink(path)
    return escaped(f"created {path}")


# --- Other processes: another job, the agent, PID 1 ---


def own_process(pid: str) -> bool:
    """True if `pid` is this job's own: the probe or an ancestor in the job's cgroup. With a
    private PID namespace the numbers the test passed would name the job's processes (PID 1 is
    its main process), not the target. PID 1 of a shared namespace is an ancestor too, but in
    another cgroup (init.scope)."""
    cgroup = read_text("/proc/self/cgroup")
    current = os.getpid()
    while current > 0:
        if str(current) == pid:
            return bool(cgroup) and read_text(f"/proc/{pid}/cgroup") == cgroup
        status = read_text(f"/proc/{current}/status")
        current = next((int(line.split()[1]) for line in status if line.startswith("PPid:")), 0)
    return False


def read_text(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


@action("see")
def see(pid: str) -> Result:
    if own_process(pid):
        return blocked(f"pid {pid} is one of this job's own processes here")

    def cmdline() -> str:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().decode(errors="replace").replace("\0", " ").split()
            return " ".join(words)[:120]

    return succeeds(f"see pid {pid} in /proc", cmdline)


@action("signal")
def send_signals(pid: str) -> Result:
    """Signal 0, then SIGKILL only if signal 0 was refused: the kernel checks both the same way,
    and a job that can signal the agent must not actually kill it (nor a target other probes need).
    """
    if own_process(pid):
        return blocked(f"pid {pid} is one of this job's own processes here")
    try:
        os.kill(int(pid), 0)
    except OSError as exc:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            return refused(exc, f"signal pid {pid}")
        return escaped(f"signal 0 to pid {pid} refused, yet SIGKILL was delivered")
    return escaped(f"signal 0 delivered to pid {pid} (SIGKILL would have been too; not sent)")


@action("ptrace")
def ptrace(pid: str) -> Result:
    """PTRACE_SEIZE passes the same permission check as PTRACE_ATTACH but does not stop the target
    (an escaped ATTACH would stall PID 1 or the agent); exiting detaches."""
    if own_process(pid):
        return blocked(f"pid {pid} is one of this job's own processes here")
    return succeeds(f"ptrace pid {pid}", lambda: syscall("ptrace", PTRACE_SEIZE, int(pid), 0, 0))


@action("read-environ")
def read_environ(pid: str) -> Result:
    """Only the number of variables is reported: the values may be secrets."""
    if own_process(pid):
        return blocked(f"pid {pid} is one of this job's own processes here")

    def read() -> str:
        with open(f"/proc/{pid}/environ", "rb") as f:
            count = f.read().count(b"\0")
            return f"{count} variables"

    return succeeds(f"read /proc/{pid}/environ", read)


# --- Privileged system calls ---


@action("mount-tmpfs")
def mount_tmpfs() -> Result:
    """A real tmpfs on a fresh directory of our own, detached at once if it worked."""
    target = tempfile.mkdtemp(prefix="joblet-probe-").encode()
    try:
        syscall("mount", b"tmpfs", target, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=1m")
    except OSError as exc:
        return refused(exc, "mount a tmpfs")
    finally:
        if os.path.ismount(target):
            syscall("umount2", target, MNT_DETACH)
        os.rmdir(target)
    return escaped(f"mounted a tmpfs on {target.decode()} (unmounted again)")


def unshare(flag: int, what: str) -> Result:
    return succeeds(f"unshare({what})", lambda: syscall("unshare", flag))


@action("unshare-user")
def unshare_user() -> Result:
    return unshare(CLONE_NEWUSER, "CLONE_NEWUSER")


@action("unshare-net")
def unshare_net() -> Result:
    return unshare(CLONE_NEWNET, "CLONE_NEWNET")


@action("unshare-mount")
def unshare_mount() -> Result:
    return unshare(CLONE_NEWNS, "CLONE_NEWNS")


@action("chroot")
def chroot() -> Result:
    return succeeds('chroot("/")', lambda: os.chroot("/"))


@action("pivot-root")
def pivot_root() -> Result:
    # The capability check comes before the path lookup: ENOENT means it passed.
    return past_permission_check(
        "pivot_root", lambda: syscall("pivot_root", MISSING, MISSING), errno.ENOENT
    )


@action("init-module")
def init_module() -> Result:
    # An empty image is rejected (ENOEXEC) only after CAP_SYS_MODULE was checked.
    return past_permission_check(
        "init_module", lambda: syscall("init_module", None, 0, b""), errno.ENOEXEC
    )


@action("finit-module")
def finit_module() -> Result:
    # fd -1 is rejected (EBADF) only after CAP_SYS_MODULE was checked.
    return past_permission_check(
        "finit_module", lambda: syscall("finit_module", -1, b"", 0), errno.EBADF
    )


@action("kexec-load")
def kexec_load() -> Result:
    # An undefined flag (bit 15) and too many segments are rejected (EINVAL) only after
    # CAP_SYS_BOOT was checked; nothing is loaded or unloaded.
    return past_permission_check(
        "kexec_load", lambda: syscall("kexec_load", 0, 1000, None, 0x8000), errno.EINVAL
    )


@action("reboot")
def reboot() -> Result:
    # CAP_SYS_BOOT is checked before the magic numbers; a zero magic1 always fails with EINVAL,
    # and cmd 0 (CAD_OFF) would be harmless even then.
    return past_permission_check("reboot", lambda: syscall("reboot", 0, 0, 0, None), errno.EINVAL)


@action("swapon")
def swapon() -> Result:
    # CAP_SYS_ADMIN is checked before the path is opened: ENOENT means it passed.
    return past_permission_check("swapon", lambda: syscall("swapon", MISSING, 0), errno.ENOENT)


@action("settimeofday")
def settimeofday() -> Result:
    # No time, and a timezone 24 h west: CAP_SYS_TIME is checked before the +-15 h range check,
    # so EINVAL means it passed and nothing changed.
    timezone = (ctypes.c_int * 2)(24 * 60, 0)
    return past_permission_check(
        "settimeofday",
        lambda: syscall("settimeofday", None, ctypes.byref(timezone)),
        errno.EINVAL,
    )


@action("clock-settime")
def clock_settime() -> Result:
    # CLOCK_REALTIME := 1 s after the epoch: CAP_SYS_TIME is checked first, then (Linux >= 4.18,
    # "time: Always make sure wall_to_monotonic isn't positive") a time before boot is refused
    # with EINVAL. So EINVAL means it passed and the clock did not move.
    release = tuple(int(part) for part in platform.release().split(".")[:2] if part.isdigit())
    if release < (4, 18) or time.monotonic() < 10:
        return error("refusing: this kernel might actually set the clock")
    epoch_plus_one = (ctypes.c_long * 2)(1, 0)
    return past_permission_check(
        "clock_settime(CLOCK_REALTIME)",
        lambda: syscall("clock_settime", 0, ctypes.byref(epoch_plus_one)),
        errno.EINVAL,
    )


@action("sethostname")
def sethostname() -> Result:
    # To the name it already has: harmless if it works.
    name = os.uname().nodename.encode()
    return succeeds(
        f"sethostname({name.decode()!r})", lambda: syscall("sethostname", name, len(name))
    )


@action("add-key")
def add_key() -> Result:
    # Into the process keyring, which dies with the probe.
    def add() -> str:
        key = syscall("add_key", b"user", b"joblet-probe", b"x", 1, KEY_SPEC_PROCESS_KEYRING)
        return f"key {key}"

    return succeeds("add_key", add)


@action("bpf")
def bpf() -> Result:
    attr = (ctypes.c_uint32 * 32)(BPF_MAP_TYPE_ARRAY, 4, 4, 1)  # type, key, value size, entries
    return succeeds(
        "bpf(BPF_MAP_CREATE)",
        lambda: close_fd(syscall("bpf", BPF_MAP_CREATE, ctypes.byref(attr), ctypes.sizeof(attr))),
    )


@action("perf-event-open")
def perf_event_open() -> Result:
    # A CPU-wide event (every process on CPU 0), not one on ourselves: that is what needs
    # CAP_PERFMON; an unprivileged process may count its own events.
    attr = (ctypes.c_uint32 * 16)()  # PERF_ATTR_SIZE_VER0: 64 bytes
    attr[0], attr[1] = PERF_TYPE_SOFTWARE, ctypes.sizeof(attr)  # config 0: PERF_COUNT_SW_CPU_CLOCK
    attr[10] = 1  # disabled
    return succeeds(
        "perf_event_open(pid=-1, cpu=0)",
        lambda: close_fd(
            syscall("perf_event_open", ctypes.byref(attr), -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
        ),
    )


@action("userfaultfd")
def userfaultfd() -> Result:
    # Without UFFD_USER_MODE_ONLY: kernel-mode fault handling, the kind exploits use.
    return succeeds(
        "userfaultfd", lambda: close_fd(syscall("userfaultfd", os.O_CLOEXEC | os.O_NONBLOCK))
    )


@action("io-uring")
def io_uring() -> Result:
    params = (ctypes.c_uint8 * 120)()  # struct io_uring_params, zeroed
    return succeeds(
        "io_uring_setup", lambda: close_fd(syscall("io_uring_setup", 1, ctypes.byref(params)))
    )


@action("tiocsti")
def tiocsti() -> Result:
    """TIOCSTI with a NULL character: EFAULT means the permission checks passed; nothing is typed.
    Tries the controlling terminal, stdin, the console and every pty the job can open."""
    candidates = ["/dev/tty", "/proc/self/fd/0", "/dev/console", "/dev/tty0"]
    with contextlib.suppress(OSError):
        candidates += [f"/dev/pts/{n}" for n in os.listdir("/dev/pts") if n.isdigit()]
    libc = ctypes.CDLL(None, use_errno=True)
    tried = []
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            tried.append(f"{path}: {exc.strerror}")
            continue
        try:
            if not os.isatty(fd):
                tried.append(f"{path}: not a terminal")
                continue
            if libc.ioctl(fd, TIOCSTI, None) == 0:
                return escaped(f"TIOCSTI on {path} succeeded")
            number = ctypes.get_errno()
            if number == errno.EFAULT:
                return escaped(f"TIOCSTI on {path} passed the permission checks", number)
            tried.append(f"{path}: {os.strerror(number)}")
        finally:
            os.close(fd)
    return blocked("no terminal accepts TIOCSTI: " + "; ".join(tried))


# --- Calls an unprivileged process may make: only a seccomp filter refuses them ---
#
# Each does something harmless to the probe itself (its own nice value, affinity, scheduler,
# memory policy, rlimit, UID, capabilities, keyring, a read of the clock's state), which needs
# no privilege: "blocked" in a job (EPERM) is the job's SystemCallFilter, and the same action
# outside a job, as nobody, must report "escaped" (tests/security/test_probes.py runs both).


@action("setpriority")
def set_priority() -> Result:
    # Lowering one's own priority (nice 19) needs no privilege.
    return succeeds("setpriority(PRIO_PROCESS, self, 19)", lambda: os.setpriority(0, 0, 19))


@action("sched-setaffinity")
def sched_setaffinity() -> Result:
    # To the mask it already has.
    return succeeds(
        "sched_setaffinity(self, its own mask)",
        lambda: os.sched_setaffinity(0, os.sched_getaffinity(0)),
    )


@action("widen-affinity")
def widen_affinity() -> Result:
    """Every CPU of the host for itself: escaped if its mask is then wider than it was."""
    before = os.sched_getaffinity(0)
    wanted = set(range(os.cpu_count() or 1))
    try:
        os.sched_setaffinity(0, wanted)
    except OSError as exc:
        return refused(exc, f"sched_setaffinity(self, {sorted(wanted)}) from {sorted(before)}")
    after = os.sched_getaffinity(0)
    if after - before:
        return escaped(f"its CPUs went from {sorted(before)} to {sorted(after)}")
    return blocked(f"the call returned but its CPUs stayed {sorted(after)}")


@action("sched-setscheduler")
def sched_setscheduler() -> Result:
    # SCHED_IDLE for itself: a lower class, allowed without privilege.
    return succeeds(
        "sched_setscheduler(self, SCHED_IDLE)",
        lambda: os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0)),
    )


@action("set-mempolicy")
def set_mempolicy() -> Result:
    # MPOL_DEFAULT (0) for itself.
    return succeeds("set_mempolicy(MPOL_DEFAULT)", lambda: syscall("set_mempolicy", 0, None, 0))


@action("mbind")
def mbind() -> Result:
    # MPOL_DEFAULT (0) on a page of its own.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]  # fmt: skip
    page = 4096
    address = libc.mmap(None, page, 3, 0x22, -1, 0)  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
    if address in (None, ctypes.c_void_p(-1).value):
        return error("mmap of one page failed")
    return succeeds(
        "mbind(one page, MPOL_DEFAULT)", lambda: syscall("mbind", address, page, 0, None, 0, 0)
    )


class Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]


RLIMIT_NOFILE = 7


@action("setrlimit")
def set_rlimit() -> Result:
    # The legacy call, to the limits it has (glibc's setrlimit() uses prlimit64 instead).
    import resource

    current = Rlimit(*resource.getrlimit(resource.RLIMIT_NOFILE))
    return succeeds(
        "setrlimit(RLIMIT_NOFILE, unchanged)",
        lambda: syscall("setrlimit", RLIMIT_NOFILE, ctypes.byref(current)),
    )


@action("prlimit-raise-hard")
def prlimit_raise_hard() -> Result:
    """prlimit64 on itself, raising RLIMIT_NOFILE's hard limit by one: needs CAP_SYS_RESOURCE."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return escaped("RLIMIT_NOFILE's hard limit is already unlimited")
    wanted = Rlimit(soft, hard + 1)
    return succeeds(
        f"prlimit64(self, RLIMIT_NOFILE, hard {hard} -> {hard + 1})",
        lambda: syscall("prlimit64", 0, RLIMIT_NOFILE, ctypes.byref(wanted), None),
    )


@action("setuid-self")
def setuid_self() -> Result:
    # To the UID it has.
    return succeeds(f"setuid({os.getuid()}) (its own)", lambda: os.setuid(os.getuid()))


@action("chown-self")
def chown_self() -> Result:
    # A file of its own, to its own UID and GID.
    def chown() -> str:
        with tempfile.NamedTemporaryFile(dir="/tmp") as f:
            os.fchown(f.fileno(), os.getuid(), os.getgid())
        return "fchown of its own file to itself"

    return succeeds("fchown(own file, own uid, own gid)", chown)


@action("capset-self")
def capset_self() -> Result:
    # The capabilities it has (capget, then capset of the same sets).
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()

    def capset() -> str:
        syscall("capget", ctypes.byref(header), ctypes.byref(data))
        syscall("capset", ctypes.byref(header), ctypes.byref(data))
        return "capset of its own sets"

    return succeeds("capset(unchanged)", capset)


@action("keyctl")
def keyctl() -> Result:
    # KEYCTL_GET_KEYRING_ID (0) of its process keyring, made if missing: it dies with the probe.
    return succeeds(
        "keyctl(KEYCTL_GET_KEYRING_ID, process keyring)",
        lambda: f"keyring {syscall('keyctl', 0, KEY_SPEC_PROCESS_KEYRING, 1)}",
    )


@action("request-key")
def request_key() -> Result:
    # A key nobody has: ENOKEY once the call was allowed.
    return past_permission_check(
        "request_key",
        lambda: syscall("request_key", b"user", b"joblet-probe-no-such-key", None, 0),
        errno.ENOKEY,
    )


@action("adjtimex-read")
def adjtimex_read() -> Result:
    # modes 0: only reads the clock's state, which needs no privilege.
    timex = (ctypes.c_uint8 * 512)()
    return succeeds(
        "adjtimex(modes=0)", lambda: f"clock state {syscall('adjtimex', ctypes.byref(timex))}"
    )


@action("ioperm-off")
def ioperm_off() -> Result:
    # Turning I/O port access OFF needs no privilege (x86 only).
    if platform.machine() != "x86_64":
        return error("ioperm exists on x86 only")
    return succeeds("ioperm(0, 1, off)", lambda: syscall("ioperm", 0, 1, 0))


@action("quotactl-sync")
def quotactl_sync() -> Result:
    # Q_SYNC of every filesystem's quotas: no privilege needed.
    q_sync_user = (0x800001 << 8) | 0
    return succeeds("quotactl(Q_SYNC)", lambda: syscall("quotactl", q_sync_user, None, 0, None))


@action("userfaultfd-user-mode")
def userfaultfd_user_mode() -> Result:
    # UFFD_USER_MODE_ONLY (1): allowed without privilege whatever vm.unprivileged_userfaultfd says.
    return succeeds(
        "userfaultfd(UFFD_USER_MODE_ONLY)",
        lambda: close_fd(syscall("userfaultfd", 1 | os.O_CLOEXEC | os.O_NONBLOCK)),
    )


@action("perf-event-self")
def perf_event_self() -> Result:
    # A software event counting itself (pid 0, any CPU): no privilege at perf_event_paranoid <= 2.
    attr = (ctypes.c_uint32 * 16)()
    attr[0], attr[1] = PERF_TYPE_SOFTWARE, ctypes.sizeof(attr)
    attr[10] = 1 | (1 << 5)  # disabled, exclude_kernel
    return succeeds(
        "perf_event_open(self)",
        lambda: close_fd(
            syscall("perf_event_open", ctypes.byref(attr), 0, -1, -1, PERF_FLAG_FD_CLOEXEC)
        ),
    )


@action("seccomp-filter")
def seccomp_filter() -> Result:
    """Blocked when the process runs under a seccomp filter (Seccomp: 2) with no_new_privs."""
    status = dict(line.split(":\t", 1) for line in read_text("/proc/self/status") if ":\t" in line)
    mode, nnp = status.get("Seccomp", "?").strip(), status.get("NoNewPrivs", "?").strip()
    if mode == "2" and nnp == "1":
        return blocked("Seccomp: 2 (filter), NoNewPrivs: 1")
    return escaped(f"Seccomp: {mode}, NoNewPrivs: {nnp}: no filter on this process")


# --- Calls refused for lack of a capability (a filter may refuse them first) ---


@action("delete-module")
def delete_module() -> Result:
    # CAP_SYS_MODULE is checked before the name is looked up: ENOENT means it passed.
    return past_permission_check(
        "delete_module", lambda: syscall("delete_module", b"joblet_probe_none", 0), errno.ENOENT
    )


@action("swapoff")
def swapoff() -> Result:
    return past_permission_check("swapoff", lambda: syscall("swapoff", MISSING), errno.ENOENT)


@action("setdomainname")
def setdomainname() -> Result:
    # To the name it already has: harmless if it works.
    buffer = ctypes.create_string_buffer(65)
    if ctypes.CDLL(None, use_errno=True).getdomainname(buffer, 64) != 0:
        return error("getdomainname failed")
    name = buffer.value
    return succeeds(
        f"setdomainname({name.decode()!r})", lambda: syscall("setdomainname", name, len(name))
    )


@action("acct")
def acct() -> Result:
    # CAP_SYS_PACCT is checked before the file is opened: ENOENT means it passed.
    return past_permission_check("acct", lambda: syscall("acct", MISSING), errno.ENOENT)


@action("kexec-file-load")
def kexec_file_load() -> Result:
    # CAP_SYS_BOOT is checked before the descriptors: EBADF means it passed; nothing is loaded.
    return past_permission_check(
        "kexec_file_load", lambda: syscall("kexec_file_load", -1, -1, 0, None, 0), errno.EBADF
    )


@action("setns")
def setns() -> Result:
    # Into its own UTS namespace: needs CAP_SYS_ADMIN (and RestrictNamespaces= filters it).
    def join() -> str:
        fd = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscall("setns", fd, 0x04000000)  # CLONE_NEWUTS
        finally:
            os.close(fd)
        return "joined its own UTS namespace again"

    return succeeds("setns(own UTS namespace)", join)


@action("iopl")
def iopl() -> Result:
    # Level 3 needs CAP_SYS_RAWIO (x86 only).
    if platform.machine() != "x86_64":
        return error("iopl exists on x86 only")
    return succeeds("iopl(3)", lambda: syscall("iopl", 3))


# --- Devices and sockets ---


def open_device(path: str) -> Result:
    def opened() -> str:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        st = os.fstat(fd)
        os.close(fd)
        return f"device {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"

    return succeeds(f"open {path}", opened)


@action("open-device")
def open_device_action(path: str) -> Result:
    return open_device(path)


@action("open-block-device")
def open_block_device() -> Result:
    """Any block device node the job can see (vda, sda, loop0, ...); none counts as blocked."""
    try:
        names = sorted(os.listdir("/dev"))
    except OSError as exc:
        return refused(exc, "list /dev")
    devices = []
    for name in names:
        try:
            if stat.S_ISBLK(os.stat(f"/dev/{name}").st_mode):
                devices.append(f"/dev/{name}")
        except OSError:
            continue
    if not devices:
        return blocked("no block device in /dev")
    results = [open_device(path) for path in devices]
    return next((r for r in results if r.outcome != "blocked"), results[0])


@action("packet-socket")
def packet_socket() -> Result:
    return succeeds(
        "socket(AF_PACKET, SOCK_RAW)",
        lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close(),
    )


@action("raw-socket")
def raw_socket() -> Result:
    return succeeds(
        "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)",
        lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close(),
    )


@action("netlink-socket")
def netlink_socket() -> Result:
    return succeeds(
        "socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)",
        lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close(),
    )


@action("inet-socket")
def inet_socket() -> Result:
    """Not forbidden on a network: the control that a job of one may use IP sockets at all."""
    return succeeds(
        "socket(AF_INET, SOCK_STREAM)",
        lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close(),
    )


@action("tcp-connect")
def tcp_connect(host: str, port: str) -> Result:
    """No answer within 2 s counts as escaped: a route existed and the SYN left the job."""
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            pass
    except TimeoutError:
        return escaped(f"connect to {host}:{port} timed out: packets left the job")
    except OSError as exc:
        return refused(exc, f"connect to {host}:{port}")
    return escaped(f"connected to {host}:{port}")


@action("udp-send")
def udp_send(host: str, port: str) -> Result:
    def send() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return f"{s.sendto(b'', (host, int(port)))} bytes sent"

    return succeeds(f"sendto {host}:{port}", send)


@action("unix-connect")
def unix_connect(path: str) -> Result:
    """Stream first; journald's native socket and others are datagram sockets (EPROTOTYPE)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_UNIX, kind) as s:
            s.settimeout(2)
            try:
                s.connect(path)
            except OSError as exc:
                if exc.errno == errno.EPROTOTYPE:
                    continue
                return refused(exc, f"connect to {path}")
            return escaped(f"connected to {path}")
    return error(f"{path} accepts neither stream nor datagram connections")


# --- setuid ---

SETUID_PROGRAMS = [["/usr/bin/mount", "--version"], ["/usr/bin/su", "--version"]]


@action("setuid")
def setuid() -> Result:
    """Runs a setuid-root program and reads its credentials while it is a zombie (waitid WNOWAIT
    keeps it unreaped and its /proc/<pid>/status readable), so timing does not matter.

    Escaped: the program ran with euid 0 (setuid was honoured, or the job is root already).
    If its /proc entry is not readable to us, exec changed its credentials (ProtectProc hides
    other users' processes; setuid makes it non-dumpable), which is also an escape.
    """
    for argv in SETUID_PROGRAMS:
        try:
            st = os.stat(argv[0])
        except OSError:
            continue
        if not (st.st_mode & stat.S_ISUID and st.st_uid == 0):
            continue
        try:
            pid = os.posix_spawn(argv[0], argv, {}, file_actions=quiet_stdio())
        except OSError as exc:
            return refused(exc, f"execute {argv[0]}")
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            with open(f"/proc/{pid}/status") as f:
                uids = next(line.split()[1:] for line in f if line.startswith("Uid:"))
        except OSError as exc:
            return escaped(f"{argv[0]} ran with other credentials ({exc.strerror} on its /proc)")
        finally:
            os.waitpid(pid, 0)
        who = "the job itself is root" if os.geteuid() == 0 else "setuid honoured"
        if uids[1] == "0":
            return escaped(f"{argv[0]} ran with euid 0 ({who}); uids {' '.join(uids)}")
        return blocked(f"{argv[0]} ran with euid {uids[1]}: setuid ignored")
    return blocked("no setuid-root program here")


def quiet_stdio() -> list[tuple[int, int, str, int, int]]:
    return [(os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_RDWR, 0) for fd in (0, 1, 2)]


# --- Running one action ---


def run_isolated(fn: Callable[..., Result], args: list[str]) -> Result:
    """Runs the action in a child and reads its Result through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        signal.alarm(ACTION_TIMEOUT_SEC)
        try:
            result = fn(*args)
        except BaseException as exc:  # a broken probe must say so, not pass
            result = error(f"probe crashed: {type(exc).__name__}: {exc}")
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if chunks:
        return Result(*json.loads(b"".join(chunks)))
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS:
        return blocked("killed by SIGSYS: a seccomp filter refused the system call")
    if os.WIFSIGNALED(status):
        return error(f"the probe died of {signal.Signals(os.WTERMSIG(status)).name}")
    return error(f"the probe exited with status {os.waitstatus_to_exitcode(status)}, no result")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ACTIONS:
        print(f"usage: attempt.py ACTION [ARG...]; actions: {' '.join(ACTIONS)}", file=sys.stderr)
        return 2
    name, args = argv[0], argv[1:]
    result = run_isolated(ACTIONS[name], args)
    report = {"probe": name, "args": args, **result._asdict()}
    print(json.dumps(report), flush=True)
    return {"blocked": 0, "escaped": 1}.get(result.outcome, 2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
