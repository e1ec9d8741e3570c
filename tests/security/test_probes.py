"""Escape probes: every forbidden action of probes/attempt.py, each in a job of its own, is blocked.

A probe reports "blocked", "escaped" or "error"; only "blocked" passes, and a job that printed no
verdict at all fails (see probing.run_probe). tests/security/README.md lists what each tries.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rnx.client import Client
from tests.integration.conftest import JOBS_DIR, sh
from tests.security.probing import await_verdict, outside_a_job, run_probe, stop_and_wait

pytestmark = pytest.mark.integration

SECRET = "joblet-probe-secret"

# Another job that keeps a secret in its /work and stays alive for the probes aimed at it.
VICTIM = (
    "import json, time\n"
    f"open('secret', 'w').write({SECRET!r})\n"
    "print(json.dumps({'probe': 'victim', 'outcome': 'ready'}), flush=True)\n"
    "time.sleep(600)\n"
)


@dataclass(frozen=True)
class Case:
    """One probe: an action of attempt.py and its arguments. Arguments may name targets:
    {other_id} and {other_pid} (the victim job), {agent_pid} (joblet.service), {pid1},
    {block_device} (a block device node of the sandbox). `errnos`, if given, are the only refusals
    that count: the one that proves the defence the case is about."""

    name: str
    action: str
    args: tuple[str, ...] = ()
    errnos: tuple[str | None, ...] = ()

    def __str__(self) -> str:
        return self.name


def case(name: str, action: str, *args: str, errnos: tuple[str | None, ...] = ()) -> Case:
    return Case(name, action, args, errnos)


def aimed_at(what: str, target: str) -> list[Case]:
    """See, signal, ptrace and read the environment of a process."""
    return [
        case(f"see-{what}", "see", target),
        case(f"signal-{what}", "signal", target),
        case(f"ptrace-{what}", "ptrace", target),
        case(f"read-environ-{what}", "read-environ", target),
    ]


# RestrictAddressFamilies=AF_UNIX refuses the socket itself: no route or capability is needed to
# try, and no other refusal (ENETUNREACH in a namespace without routes, EPERM for lack of
# CAP_NET_RAW) would show that the family filter is there.
NO_FAMILY = ("EAFNOSUPPORT",)
# PrivateDevices=yes: the node is not in the job's /dev at all (EACCES would mean it is there).
NOT_THERE = ("ENOENT",)

CASES = [
    # The host's and the agent's secrets.
    case("read-shadow", "read-file", "/etc/shadow"),
    case("list-root", "list-dir", "/root"),
    case("list-home", "list-dir", "/home"),
    case("read-state-db", "read-file", "/var/lib/joblet/jobs.sqlite"),
    case("list-state-jobs", "list-dir", "/var/lib/joblet/jobs"),
    case("read-ca-key", "read-file", "/etc/joblet/pki/ca.key"),
    case("read-server-key", "read-file", "/etc/joblet/pki/server.key"),
    # Another job's files, by their host path and through its /proc entry.
    case("read-other-job-work", "read-job-work", "{other_id}"),
    case("read-other-job-via-proc", "read-proc-root", "{other_pid}", "{other_id}"),
    # Writable system trees (/tmp: test_private_tmp_write_stays_private).
    case("write-usr", "write", "/usr"),
    case("write-etc", "write", "/etc"),
    case("write-var", "write", "/var"),
    # Other processes.
    *aimed_at("other-job", "{other_pid}"),
    *aimed_at("agent", "{agent_pid}"),
    *aimed_at("pid1", "{pid1}"),
    # Privileged system calls: refused for want of a capability, whether or not the filter is
    # there (the filter's own refusals are FILTERED below).
    case("mount-tmpfs", "mount-tmpfs"),
    case("unshare-user", "unshare-user"),
    case("unshare-net", "unshare-net"),
    case("unshare-mount", "unshare-mount"),
    case("setns", "setns"),
    case("chroot", "chroot"),
    case("pivot-root", "pivot-root"),
    case("reboot", "reboot"),
    case("swapon", "swapon"),
    case("swapoff", "swapoff"),
    case("settimeofday", "settimeofday"),
    case("clock-settime", "clock-settime"),
    case("sethostname", "sethostname"),
    case("setdomainname", "setdomainname"),
    case("acct", "acct"),
    case("bpf", "bpf"),
    case("userfaultfd", "userfaultfd"),
    case("prlimit-raise-hard", "prlimit-raise-hard"),
    case("tiocsti", "tiocsti"),
    # Devices (each is there in the sandbox: test_the_device_nodes_probed_are_there), raw
    # sockets, setuid.
    case("open-dev-kmsg", "open-device", "/dev/kmsg", errnos=NOT_THERE),
    case("open-loop-control", "open-device", "/dev/loop-control", errnos=NOT_THERE),
    case("open-block-device", "open-device", "{block_device}", errnos=NOT_THERE),
    case("packet-socket", "packet-socket", errnos=NO_FAMILY),
    case("raw-socket", "raw-socket", errnos=NO_FAMILY),
    case("netlink-socket", "netlink-socket", errnos=NO_FAMILY),
    case("setuid", "setuid"),
    # The network, and the host's local sockets (stdout reaches the journal through an fd the job
    # is given, not by connecting).
    case("tcp-out", "tcp-connect", "1.1.1.1", "53", errnos=NO_FAMILY),
    case("udp-out", "udp-send", "1.1.1.1", "53", errnos=NO_FAMILY),
    case("agent-socket", "unix-connect", "/run/joblet/joblet.sock"),
    case("dbus-socket", "unix-connect", "/run/dbus/system_bus_socket"),
    case("systemd-private-socket", "unix-connect", "/run/systemd/private"),
    case("journal-socket", "unix-connect", "/run/systemd/journal/socket"),
]

# What only the job's seccomp filter refuses (SystemCallErrorNumber=EPERM): each of these is
# also run outside any job as nobody (no capability, no filter), where it must NOT be refused
# with EPERM: it works there, or this kernel answers otherwise (ENOSYS: the call is not built
# in; EACCES: perf_event_paranoid). An EPERM in the job is then the filter's alone.
FILTERED = [
    # @resources
    case("setpriority", "setpriority"),
    case("sched-setaffinity", "sched-setaffinity"),
    case("sched-setscheduler", "sched-setscheduler"),
    case("set-mempolicy", "set-mempolicy"),
    case("mbind", "mbind"),
    case("setrlimit", "setrlimit"),
    # @privileged
    case("setuid-self", "setuid-self"),
    case("chown-self", "chown-self"),
    case("capset-self", "capset-self"),
    case("quotactl-sync", "quotactl-sync"),
    case("adjtimex-read", "adjtimex-read"),
    case("ioperm-off", "ioperm-off"),
    case("iopl", "iopl"),
    case("init-module", "init-module"),
    case("finit-module", "finit-module"),
    case("delete-module", "delete-module"),
    case("kexec-load", "kexec-load"),
    case("kexec-file-load", "kexec-file-load"),
    # @keyring, io_uring, userfaultfd, and what @system-service does not hold
    case("add-key", "add-key"),
    case("keyctl", "keyctl"),
    case("request-key", "request-key"),
    case("io-uring", "io-uring"),
    case("userfaultfd-user-mode", "userfaultfd-user-mode"),
    case("perf-event-self", "perf-event-self"),
    case("perf-event-open", "perf-event-open"),
]


@dataclass(frozen=True)
class OtherJob:
    id: str
    pid: str


@pytest.fixture(scope="module")
def other_job() -> Iterator[OtherJob]:
    """Started before any test's unit guard looks (module scope), stopped after the last."""
    with Client() as client:
        job = client.run(["python3", "-c", VICTIM], name="probe-victim")
        try:
            await_verdict(client, job.id, timeout=30)
            pid = sh("systemctl", "show", "-P", "MainPID", job.unit).strip()
            # The secret is there (root sees the job's /work through its /proc entry), so a
            # probe that cannot read it was truly blocked.
            assert Path(f"/proc/{pid}/root/work/secret").read_text() == SECRET
            assert (JOBS_DIR / job.id / "work.img").is_file()
            yield OtherJob(job.id, pid)
        finally:
            stop_and_wait(client, job.id)


def process_identity(pid: str) -> str:
    """pid + start time, as the test (root in the sandbox) sees it: a restarted agent differs."""
    try:
        return pid + ":" + Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return pid + ":gone"


def block_device() -> str:
    """A block device node of the sandbox's /dev (root:disk 0660 there, so a job that could see
    it would get EACCES; ENOENT shows it is not in the job's /dev at all)."""
    for name in sorted(os.listdir("/dev")):
        if stat.S_ISBLK(os.stat(f"/dev/{name}").st_mode):
            return f"/dev/{name}"
    raise AssertionError("the sandbox has no block device node in /dev to probe with")


def test_the_device_nodes_probed_are_there() -> None:
    """A probe of a device the machine lacks proves nothing (/dev/mem is not on these VMs)."""
    for path in ("/dev/kmsg", "/dev/loop-control", block_device()):
        assert stat.S_ISCHR(os.stat(path).st_mode) or stat.S_ISBLK(os.stat(path).st_mode), path
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # root outside a job opens it


def assert_blocked(probe: Case, report: dict[str, Any]) -> None:
    if report["outcome"] != "blocked":
        pytest.fail(
            f"{probe} {report['outcome'].upper()}: {report['detail']} (errno {report['errno']})",
            pytrace=False,
        )
    if probe.errnos and report["errno"] not in probe.errnos:
        pytest.fail(
            f"{probe} refused with {report['errno']}, not {'/'.join(map(str, probe.errnos))}: "
            f"{report['detail']}; the defence it is about did not act",
            pytrace=False,
        )


@pytest.mark.parametrize("probe", CASES, ids=str)
def test_probe_is_blocked(client: Client, other_job: OtherJob, probe: Case) -> None:
    client.health()  # the agent is socket-activated: have it running, so it has a MainPID
    targets = {
        "other_id": other_job.id,
        "other_pid": other_job.pid,
        "agent_pid": sh("systemctl", "show", "-P", "MainPID", "joblet.service").strip(),
        "pid1": "1",
        "block_device": block_device(),
    }
    assert targets["agent_pid"] != "0", "the agent has no MainPID: probes aimed at it mean nothing"
    args = [arg.format(**targets) for arg in probe.args]
    # A target that died or was replaced during the probe would make ESRCH look like "blocked".
    pids = {targets["other_pid"], targets["agent_pid"], targets["pid1"]}
    watched = {arg: process_identity(arg) for arg in args if arg in pids}
    report = run_probe(client, "attempt", probe.action, *args)
    for pid, identity in watched.items():
        assert process_identity(pid) == identity, f"target pid {pid} changed during the probe"
    victim = client.get(other_job.id).state
    assert victim == "RUNNING", f"the target job is {victim}: verdicts about it mean nothing"
    assert_blocked(probe, report)


@pytest.mark.parametrize("probe", FILTERED, ids=str)
def test_the_filter_refuses_what_an_unprivileged_process_may_do(
    client: Client, probe: Case
) -> None:
    control = outside_a_job(probe.action)
    assert (control["outcome"], control["errno"]) != ("blocked", "EPERM"), (
        f"{probe}: refused with EPERM outside a job too, so a job's EPERM would prove nothing "
        f"about its filter: {control['detail']}"
    )
    assert control["outcome"] != "error", control
    report = run_probe(client, "attempt", probe.action)
    assert_blocked(Case(probe.name, probe.action, errnos=("EPERM",)), report)


def test_jobs_run_under_a_seccomp_filter_with_no_new_privileges(client: Client) -> None:
    assert outside_a_job("seccomp-filter")["outcome"] == "escaped"  # the probe can tell
    assert_blocked(
        case("seccomp-filter", "seccomp-filter"), run_probe(client, "attempt", "seccomp-filter")
    )


def test_a_job_may_set_its_rlimits_within_the_hard_ones(client: Client) -> None:
    """docs/security.md: prlimit64 (glibc's setrlimit()) is allowed; only the legacy setrlimit
    call is in @resources. A job lowers a soft limit and raises it back; raising a hard limit
    needs CAP_SYS_RESOURCE (prlimit-raise-hard above)."""
    code = (
        "import resource as r; s, h = r.getrlimit(r.RLIMIT_NOFILE); "
        "r.setrlimit(r.RLIMIT_NOFILE, (64, h)); low = r.getrlimit(r.RLIMIT_NOFILE)[0]; "
        "r.setrlimit(r.RLIMIT_NOFILE, (h, h)); print(low, r.getrlimit(r.RLIMIT_NOFILE)[0] == h)"
    )
    job = client.run(["python3", "-c", code])
    assert list(client.logs(job.id, follow=True)) == ["64 True"]
    assert client.get(job.id).state == "COMPLETED"


NETWORK_JOB_CASES = [
    case("packet-socket", "packet-socket", errnos=NO_FAMILY),
    case("netlink-socket", "netlink-socket", errnos=NO_FAMILY),
    case(
        "raw-socket", "raw-socket", errnos=("EPERM",)
    ),  # AF_INET is allowed; SOCK_RAW needs CAP_NET_RAW
]


@pytest.mark.parametrize("probe", NETWORK_JOB_CASES, ids=str)
def test_a_network_job_gets_ip_sockets_only(client: Client, probe: Case) -> None:
    """docs/security.md: a job on a network gains AF_INET/AF_INET6 only, still no raw, packet or
    netlink sockets. The control: the same job kind opens an IP socket."""
    opened = run_probe(client, "attempt", "inet-socket", network="isolated")
    assert opened["outcome"] == "escaped", opened
    assert_blocked(probe, run_probe(client, "attempt", probe.action, network="isolated"))


def test_private_tmp_write_stays_private(client: Client) -> None:
    """A job may write its /tmp only if that /tmp is its own: the file must not be the host's."""
    name = f".joblet-probe-{uuid.uuid4().hex}"
    report = run_probe(client, "attempt", "write", "/tmp", name)
    on_host = Path("/tmp") / name
    try:
        assert report["outcome"] in ("blocked", "escaped"), report
        assert not on_host.exists(), f"a job's write to /tmp landed in the host's /tmp: {on_host}"
    finally:
        on_host.unlink(missing_ok=True)
