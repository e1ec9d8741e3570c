"""A fresh Debian root booted with systemd-nspawn, systemd as its PID 1, for the .deb install test.

Facts this relies on (/work/shared/SYSTEMD-SANDBOX.md and what was seen here): the host's PID 1 is
not systemd, so systemd-nspawn runs with --register=no --keep-unit and puts the container in the
cgroups it was started in. It is started in cgroups of its own (one per hierarchy, below ours) so
nothing lands at the host's cgroup roots and everything can be removed afterwards. On a hybrid
host nspawn mounts the v1 controller hierarchies read-only inside, which a real Debian 12 host
does not do: systemd could then not enforce any limit. They are made writable again (per mount,
inside the container's mount namespace only) and PID 1 re-executed to notice, so the container's
systemd owns its subtree as it owns the machine on a real host. Three more differences from a
host go the same way: nspawn's /dev has no loop devices (each job's /work is a loop-mounted image),
nspawn's own boot ID hides the kernel's (see _one_boot_id), and nspawn drops CAP_SYSLOG, which a
host's PID 1 has (the agent's cgroup v1 OOM helper reads the kernel's log with it). The network is
the host's: apt reaches Debian's mirror, and the test's client reaches the agent on a loopback port
it chose.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
NSPAWN_RUNTIME = Path("/run/systemd/nspawn")  # nspawn leaves this behind on a disk-backed /run
INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "DEBIAN_FRONTEND": "noninteractive",
}
# Timers that would start apt or disk jobs in the middle of the test (apt-daily takes apt's lock).
MASKED = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "systemd-tmpfiles-clean.timer",
    "console-getty.service",
)


class MachineError(RuntimeError):
    pass


@dataclass
class Machine:
    name: str
    root: Path
    console_log: Path
    binds: Sequence[tuple[Path, str]]
    unified_cgroup: bool
    made_nspawn_runtime: bool
    cgroups: list[Path] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    pid1: int = 0
    private_network: bool = False

    # -- life cycle ---------------------------------------------------------------------------

    @classmethod
    def boot(
        cls,
        name: str,
        pristine: Path,
        workdir: Path,
        *,
        hostname: str,
        binds: Sequence[tuple[Path, str]] = (),
        files: dict[str, str] | None = None,
        unified_cgroup: bool = False,
    ) -> Machine:
        """Copy the pristine root, write `files` into the copy, boot it; wait until it runs.

        unified_cgroup: cgroup v2 only inside (Debian 13's layout), instead of the host's hybrid
        layout; on these machines v2 has no controllers, so no limit can be enforced there."""
        root = workdir / "root"
        subprocess.run(["cp", "-a", "--reflink=auto", str(pristine), str(root)], check=True)
        _prepare_root(root, hostname, files or {})
        machine = cls(
            name,
            root,
            workdir / "console.log",
            binds,
            unified_cgroup,
            made_nspawn_runtime=not NSPAWN_RUNTIME.exists(),
        )
        try:
            machine._start()
        except BaseException:
            machine.shutdown()
            raise
        return machine

    def reboot(self, *, private_network: bool) -> None:
        """Halt the container and boot the same root again (its disk state stays, as a host's
        does), in a network namespace of its own when private_network: loopback only, and PID 1
        keeps CAP_NET_ADMIN there (nspawn drops it when the network is the host's). Nothing of
        the host's network is touched; apt cannot reach Debian any more, the test's client no
        longer reaches the agent's loopback port (a client inside still does)."""
        self._halt()
        self.private_network = private_network
        try:
            self._start()
        except BaseException:
            self.shutdown()
            raise

    def shutdown(self) -> None:
        """Halt the container, then remove every trace on the host: its cgroups, nspawn's runtime
        directory if we made it, and the root copy."""
        self._halt()
        if self.made_nspawn_runtime:
            shutil.rmtree(NSPAWN_RUNTIME, ignore_errors=True)
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.root)], check=True)

    def _start(self) -> None:
        """Boot the root (in fresh cgroups of its own) and wait until its systemd runs."""
        self.cgroups = _make_cgroups(self.name)
        argv = [
            "systemd-nspawn",
            f"--directory={self.root}",
            f"--machine={self.name}",
            "--register=no",
            "--keep-unit",
            "--boot",
            "--console=read-only",
            # A host's PID 1 may read the kernel's log; nspawn drops CAP_SYSLOG, with which the
            # agent's helper reads the kernel's OOM reports on cgroup v1 (units/kernel_log.py).
            "--capability=CAP_SYSLOG",
            *(["--private-network"] if self.private_network else []),
            *[f"--bind={src}:{dst}" for src, dst in self.binds],
        ]
        unified = "1" if self.unified_cgroup else "0"
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=unified)
        cgroups = self.cgroups
        with self.console_log.open("ab") as out:
            self.process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # The test process has no threads, so a function before exec is safe here.
                preexec_fn=lambda: _join(cgroups),  # noqa: PLW1509
            )
        self.pid1 = self._find_pid1(timeout=30)
        remounted = self._writable_cgroups()
        self._loop_devices()
        self._wait_running(timeout=90)
        if remounted:  # PID 1 learns which controllers it can use when it starts
            self.run("systemctl", "daemon-reexec")
            self._wait_running(timeout=30)
        self._one_boot_id()

    def _halt(self) -> None:
        """SIGTERM to nspawn asks the container's systemd to halt; then its cgroups go."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                # Killing nspawn would leave its container running (nothing else owns it here):
                # kill the container's PID 1, which ends everything in its PID namespace.
                if self.pid1:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid1, signal.SIGKILL)
                process.wait(timeout=30)
        if self.pid1 and _status_field(self.pid1, "NSpid").split()[-1:] == ["1"]:
            raise MachineError(f"{self.name}: its PID 1 ({self.pid1}) still runs; root kept")
        for top in self.cgroups:
            _remove_cgroup_tree(top)

    # -- running things inside ----------------------------------------------------------------

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in all of the container's namespaces, from its / with a clean env."""
        env = [f"{k}={v}" for k, v in INSIDE_ENV.items()]
        cmd = ["nsenter", "-t", str(self.pid1), "-a", "-r", "-w", "env", "-i", *env, *argv]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, input=input, check=False
        )
        if check and proc.returncode != 0:
            raise MachineError(
                f"{' '.join(argv)} exited {proc.returncode} in {self.name}\n"
                f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    def sh(self, script: str, *, check: bool = True, timeout: float = 120) -> str:
        return self.run("sh", "-c", script, check=check, timeout=timeout).stdout

    def path(self, inside: str) -> Path:
        """Where a path of the container is on the host."""
        return self.root / inside.lstrip("/")

    def journal(self, lines: int = 400) -> str:
        if self.process is None or self.process.poll() is not None:
            console = self.console_log.read_text(errors="replace")
            return f"(container {self.name} is down; its console:)\n{console}"
        proc = self.run(
            "journalctl", "--no-pager", "-b", "-n", str(lines), "-o", "short-precise", check=False
        )
        return proc.stdout + proc.stderr

    # -- boot details -------------------------------------------------------------------------

    def _find_pid1(self, timeout: float) -> int:
        """The host PID of the container's systemd: nspawn's descendant that is PID 1 inside."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                console = self.console_log.read_text(errors="replace")[-4000:]
                raise MachineError(f"systemd-nspawn exited:\n{console}")
            for pid in _descendants(self.process.pid):
                nspid = _status_field(pid, "NSpid").split()
                if len(nspid) > 1 and nspid[-1] == "1":
                    return pid
            time.sleep(0.1)
        raise MachineError(f"{self.name}: no PID 1 after {timeout} s")

    def _writable_cgroups(self) -> bool:
        # (findmnt exits 1 when it finds none: a cgroup v2 only container)
        mounts = self.run(
            "findmnt", "-rn", "-t", "cgroup", "-o", "TARGET,OPTIONS", check=False
        ).stdout
        remounted = False
        for line in mounts.splitlines():
            target, options = line.split(" ", 1)
            if "ro" in options.split(","):
                self.run("mount", "-o", "remount,bind,rw", target)
                remounted = True
        return remounted

    def _loop_devices(self) -> None:
        """nspawn's /dev has no loop devices (no devtmpfs, no udev); a host's has. Each job's /work
        is an image that PID 1 loop-mounts, so make the nodes a host has (the kernel creates the
        device itself when LOOP_CTL_GET_FREE hands out a new number)."""
        script = (
            "mknod /dev/loop-control c 10 237 && "
            "for i in $(seq 0 255); do mknod /dev/loop$i b 7 $i; done && "
            "chgrp disk /dev/loop-control /dev/loop[0-9]*"
        )
        subprocess.run(["nsenter", "-t", str(self.pid1), "-m", "sh", "-c", script], check=True)

    def _one_boot_id(self) -> None:
        """nspawn shows the container a boot ID of its own, bind-mounted over the kernel's; a fresh
        procfs (the agent's ProtectProc=) shows the kernel's, and `journalctl --follow` shows
        only the current boot, so the agent's log streams would wait forever. A host has one boot
        ID: remove nspawn's, then restart journald so that entries carry the kernel's."""
        kernel = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        script = (
            "for i in 1 2 3 4; do "
            f'[ "$(cat /proc/sys/kernel/random/boot_id)" = {kernel} ] && exit 0; '
            "umount /proc/sys/kernel/random/boot_id || exit 1; done; exit 1"
        )
        self.run("sh", "-c", script)
        self.run("systemctl", "restart", "systemd-journald.service")

    def _wait_running(self, timeout: float) -> None:
        proc = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=timeout)
        state = proc.stdout.strip()
        if state != "running":
            failed = self.run("systemctl", "--failed", "--no-legend", check=False).stdout
            raise MachineError(f"{self.name} is {state!r}, not running; failed units:\n{failed}")


def _prepare_root(root: Path, hostname: str, files: dict[str, str]) -> None:
    (root / "etc/hostname").write_text(hostname + "\n")
    # As the Debian installer writes it: the host's own name resolves without DNS.
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n")
    units = root / "etc/systemd/system"
    for unit in MASKED:
        link = units / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    for inside, text in files.items():
        path = root / inside.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _hierarchies() -> list[Path]:
    """Our own cgroup in every mounted hierarchy (v1 controllers, name=systemd, v2)."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _, options = right.split(" ", 2)
        target = Path(left.split()[4])
        if fstype == "cgroup2":
            mounts.setdefault("", target)
        elif fstype == "cgroup":
            for option in options.split()[-1].split(","):
                mounts.setdefault(option, target)
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        mount = mounts.get(controllers.split(",")[0])
        if mount is not None:
            found.append(mount / path.lstrip("/"))
    return found


def _make_cgroups(name: str) -> list[Path]:
    made = []
    for parent in _hierarchies():
        group = parent / name
        group.mkdir(exist_ok=True)
        cpus = group / "cpuset.cpus"
        if cpus.exists() and not cpus.read_text().strip():  # a new v1 cpuset takes no tasks
            cpus.write_text((parent / "cpuset.cpus").read_text())
            (group / "cpuset.mems").write_text((parent / "cpuset.mems").read_text())
        made.append(group)
    return made


def _join(cgroups: list[Path]) -> None:
    """In the child before exec: move ourselves (then systemd-nspawn) into the test's cgroups."""
    for group in cgroups:
        (group / "cgroup.procs").write_text("0")


def _remove_cgroup_tree(top: Path) -> None:
    if not top.exists():
        return
    for dirpath, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(FileNotFoundError):
            Path(dirpath).rmdir()


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = [int(c) for c in (task / "children").read_text().split()]
                found += children
                todo += children
    return found


def _status_field(pid: int, field: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return line.split(":", 1)[1]
    return ""
