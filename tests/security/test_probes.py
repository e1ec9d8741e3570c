"""Escape probes: every forbidden action of probes/attempt.py, each in a job of its own, is blocked.

A probe reports "blocked", "escaped" or "error"; only "blocked" passes, and a job that printed no
verdict at all fails (see probing.run_probe). tests/security/README.md lists what each tries.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rnx.client import Client
from tests.integration.conftest import JOBS_DIR, sh
from tests.security.probing import await_verdict, run_probe, stop_and_wait

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
    {other_id} and {other_pid} (the victim job), {agent_pid} (joblet.service), {pid1}."""

    name: str
    action: str
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name


def case(name: str, action: str, *args: str) -> Case:
    return Case(name, action, args)


def aimed_at(what: str, target: str) -> list[Case]:
    """See, signal, ptrace and read the environment of a process."""
    return [
        case(f"see-{what}", "see", target),
        case(f"signal-{what}", "signal", target),
        case(f"ptrace-{what}", "ptrace", target),
        case(f"read-environ-{what}", "read-environ", target),
    ]


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
    # Privileged system calls.
    case("mount-tmpfs", "mount-tmpfs"),
    case("unshare-user", "unshare-user"),
    case("unshare-net", "unshare-net"),
    case("unshare-mount", "unshare-mount"),
    case("chroot", "chroot"),
    case("pivot-root", "pivot-root"),
    case("init-module", "init-module"),
    case("finit-module", "finit-module"),
    case("kexec-load", "kexec-load"),
    case("reboot", "reboot"),
    case("swapon", "swapon"),
    case("settimeofday", "settimeofday"),
    case("clock-settime", "clock-settime"),
    case("sethostname", "sethostname"),
    case("add-key", "add-key"),
    case("bpf", "bpf"),
    case("perf-event-open", "perf-event-open"),
    case("userfaultfd", "userfaultfd"),
    case("io-uring", "io-uring"),
    case("tiocsti", "tiocsti"),
    # Devices, raw sockets, setuid.
    case("open-dev-mem", "open-device", "/dev/mem"),
    case("open-dev-kmsg", "open-device", "/dev/kmsg"),
    case("open-block-device", "open-block-device"),
    case("packet-socket", "packet-socket"),
    case("raw-socket", "raw-socket"),
    case("setuid", "setuid"),
    # The network, and the host's local sockets (stdout reaches the journal through an fd the job
    # is given, not by connecting).
    case("tcp-out", "tcp-connect", "1.1.1.1", "53"),
    case("udp-out", "udp-send", "1.1.1.1", "53"),
    case("agent-socket", "unix-connect", "/run/joblet/joblet.sock"),
    case("dbus-socket", "unix-connect", "/run/dbus/system_bus_socket"),
    case("systemd-private-socket", "unix-connect", "/run/systemd/private"),
    case("journal-socket", "unix-connect", "/run/systemd/journal/socket"),
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


@pytest.mark.parametrize("probe", CASES, ids=str)
def test_probe_is_blocked(client: Client, other_job: OtherJob, probe: Case) -> None:
    client.health()  # the agent is socket-activated: have it running, so it has a MainPID
    targets = {
        "other_id": other_job.id,
        "other_pid": other_job.pid,
        "agent_pid": sh("systemctl", "show", "-P", "MainPID", "joblet.service").strip(),
        "pid1": "1",
    }
    args = [arg.format(**targets) for arg in probe.args]
    # A target that died or was replaced during the probe would make ESRCH look like "blocked".
    pids = {targets["other_pid"], targets["agent_pid"], targets["pid1"]}
    watched = {arg: process_identity(arg) for arg in args if arg in pids}
    report = run_probe(client, "attempt", probe.action, *args)
    for pid, identity in watched.items():
        assert process_identity(pid) == identity, f"target pid {pid} changed during the probe"
    victim = client.get(other_job.id).state
    assert victim == "RUNNING", f"the target job is {victim}: verdicts about it mean nothing"
    if report["outcome"] != "blocked":
        pytest.fail(
            f"{probe} {report['outcome'].upper()}: {report['detail']} (errno {report['errno']})",
            pytrace=False,
        )


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
