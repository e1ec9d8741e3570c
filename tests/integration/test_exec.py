"""Exec into a running job (`rnx job exec`, Client.exec): the command runs inside the job's
sandbox, by the job's own init, with the job's isolation and against the job's limits. Each
property is shown by its effect, against the real systemd in the sandbox."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from joblet_agent.domain.exec_frames import exec_request, frame
from rnx.client import Client, Job, RnxError
from tests.integration.conftest import rnx, sh, unit_property, wait_state
from tests.integration.test_control_plane import certs, pki

pytestmark = pytest.mark.integration
__all__ = ["certs", "pki"]

# The job writes a file and records its own namespaces, then waits for execs.
DEV = (
    "echo written-by-the-job > /work/mark; readlink /proc/self/ns/net > /work/netns; "
    "readlink /proc/self/ns/mnt > /work/mntns; exec sleep 600"
)


def _started(client: Client, command: list[str], **options: object) -> Job:
    job = client.run(command, **options)  # type: ignore[arg-type]
    wait_state(client, job.id, "RUNNING")
    return job


def _until_ready(client: Client, job_id: str, path: str) -> None:
    deadline = time.monotonic() + 10
    while client.exec(job_id, ["test", "-e", path]).exit_code != 0:
        assert time.monotonic() < deadline, f"the job never wrote {path}"
        time.sleep(0.05)


@pytest.fixture
def dev(client: Client) -> Iterator[Job]:
    job = _started(client, ["sh", "-c", DEV], name="exec-dev", timeout_sec=300)
    try:
        _until_ready(client, job.id, "/work/mntns")
        yield job
    finally:
        client.stop(job.id)


def test_exec_runs_inside_the_job_as_its_user_and_returns_its_exit_code(
    client: Client, dev: Job
) -> None:
    result = client.exec(
        dev.id,
        ["sh", "-c", "cat /work/mark; id -un; pwd; echo $GREETING; echo oops >&2; exit 3"],
        env={"GREETING": "hello"},
    )
    assert result.stdout.decode().split() == ["written-by-the-job", dev.user, "/work", "hello"]
    assert result.stderr == b"oops\n"
    assert (result.exit_code, result.signal, result.timed_out) == (3, None, False)
    # Same namespaces as the job's own process: the same files, the same network.
    same = client.exec(dev.id, ["sh", "-c", "readlink /proc/self/ns/net /proc/self/ns/mnt"])
    netns = client.exec(dev.id, ["cat", "/work/netns", "/work/mntns"]).stdout
    assert same.stdout == netns


def test_exec_has_the_jobs_isolation(client: Client, dev: Job) -> None:
    status = client.exec(dev.id, ["cat", "/proc/self/status"]).text
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # the job's filter
    assert int(fields["CapEff"], 16) == 0
    assert int(fields["CapBnd"], 16) == 0
    uid = fields["Uid"].split()[0]
    assert uid == sh("id", "-u", dev.user or "").strip()
    # The job's cgroup: what it runs counts against the job's memory, CPU and task limits.
    # (In its owner's slice: root's on the local socket, unix:root, units/owner.py.)
    group = f"/joblet.slice/joblet-owner.slice/joblet-owner-unix:root.slice/{dev.unit}"
    cgroups = client.exec(dev.id, ["cat", "/proc/self/cgroup"]).text
    assert f":{group}\n" in cgroups, cgroups
    assert unit_property(dev.unit, "ControlGroup") == group
    # Nothing of the host's or the agent's: no state directory, no agent socket.
    for path in ("/var/lib/joblet", "/run/joblet/joblet.sock", "/run/systemd/private"):
        assert client.exec(dev.id, ["test", "-e", path]).exit_code == 1, path


def test_exec_reaches_a_server_the_job_started_on_localhost(client: Client) -> None:
    serve = "python3 -m http.server 8080 --bind 127.0.0.1"
    job = _started(client, ["sh", "-c", serve], network="isolated", timeout_sec=120)
    try:
        fetch = (
            "import time, urllib.request as u\n"
            "for _ in range(100):\n"
            "    try:\n"
            "        print(u.urlopen('http://127.0.0.1:8080/').status); break\n"
            "    except OSError: time.sleep(0.05)\n"
        )
        assert client.exec(job.id, ["python3", "-c", fetch]).text == "200\n"
    finally:
        client.stop(job.id)


def test_an_exec_memory_hog_is_killed_by_the_jobs_memory_limit(client: Client) -> None:
    job = _started(client, ["sleep", "600"], memory_bytes="64M", timeout_sec=120)
    try:
        hog = "b = bytearray({}); b[::4096] = b'x' * len(b[::4096]); print('survived')"
        small = client.exec(job.id, ["python3", "-c", hog.format(16 << 20)])
        assert (small.exit_code, small.text) == (0, "survived\n")
        big = client.exec(job.id, ["python3", "-c", hog.format(200 << 20)])
        assert big.signal == 9 and big.exit_code == 137, big
        assert b"survived" not in big.stdout
        assert client.get(job.id).state == "RUNNING"  # the hog died, not the job
    finally:
        client.stop(job.id)


def test_an_exec_fork_bomb_stops_at_the_jobs_task_limit(client: Client) -> None:
    job = _started(client, ["sleep", "600"], max_tasks=24, timeout_sec=120)
    bomb = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 1000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print(n, e.strerror, flush=True)\n"
    )
    try:
        result = client.exec(job.id, ["python3", "-c", bomb], timeout=20)
        forks, _, why = result.text.strip().partition(" ")
        # the job's init, its sleep, the exec's handler and python hold 4 of the 24 tasks
        assert int(forks) <= 20 and why == "Resource temporarily unavailable", result
        tasks = client.metrics(job.id).unit.tasks_current
        assert tasks is not None and tasks <= 24
    finally:
        client.stop(job.id)


def test_exec_output_goes_to_the_journal_under_the_jobs_unit_with_its_exec_id(
    client: Client, dev: Job
) -> None:
    result = client.exec(dev.id, ["sh", "-c", "echo to-the-journal; echo and-stderr >&2"])
    deadline = time.monotonic() + 10
    while True:
        out = sh(
            "journalctl", "--no-pager", "-o", "json", "-u", dev.unit, f"EXEC_ID={result.exec_id}"
        )
        entries = [json.loads(line) for line in out.splitlines()]
        if len(entries) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    got = sorted((e["MESSAGE"], e["EXEC_STREAM"], e["OBJECT_SYSTEMD_UNIT"]) for e in entries)
    assert got == [
        ("and-stderr", "stderr", dev.unit),
        ("to-the-journal", "stdout", dev.unit),
    ]
    # ... and not in the job's own log stream
    assert "to-the-journal" not in list(client.logs(dev.id, follow=False))


def test_execs_run_at_once_each_with_its_own_output(client: Client, dev: Job) -> None:
    results: dict[int, bytes] = {}

    def one(n: int) -> None:
        with Client() as own:
            results[n] = own.exec(dev.id, ["sh", "-c", f"sleep 0.5; echo {n}"]).stdout

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {n: f"{n}\n".encode() for n in range(4)}
    assert time.monotonic() - start < 10  # a bound on a hang, not a speed target


def test_exec_workdir_timeout_and_stdin(client: Client, dev: Job) -> None:
    client.exec(dev.id, ["mkdir", "-p", "/work/sub"])
    assert client.exec(dev.id, ["pwd"], workdir="sub").text == "/work/sub\n"
    timed = client.exec(dev.id, ["sleep", "30"], timeout="1s")
    assert (timed.exit_code, timed.timed_out) == (124, True)
    assert client.exec(dev.id, ["wc", "-c"], input=b"x" * 300_000).text.strip() == "300000"


def test_the_cli_streams_exits_with_the_code_and_pipes_stdin(dev: Job) -> None:
    proc = rnx("job", "exec", "exec-dev", "--", "sh", "-c", "cat; echo err >&2; exit 7", stdin="hi")
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, "hi", "err\n")
    assert rnx("job", "exec", "exec-dev", "--", "wc", "-c", stdin="hi\n").stdout.strip() == "3"


def test_bad_execs_are_clear_errors(client: Client, dev: Job) -> None:
    with pytest.raises(RnxError) as missing:
        client.exec(dev.id, ["no-such-program"])
    assert missing.value.code == "not-found" and "no-such-program" in missing.value.message
    with pytest.raises(RnxError) as outside:
        client.exec(dev.id, ["true"], workdir="../etc")
    assert outside.value.code == "invalid" and "workdir" in outside.value.message
    with pytest.raises(RnxError) as unknown:
        client.exec("no-such-job-name", ["true"])
    assert unknown.value.code == "not-found"
    ended = client.run(["true"])
    wait_state(client, ended.id, "COMPLETED")
    with pytest.raises(RnxError) as gone:
        client.exec(ended.id, ["true"])
    assert gone.value.code == "conflict" and "COMPLETED" in gone.value.message
    proc = rnx("job", "exec", ended.id, "--", "true")
    assert proc.returncode == 4 and "COMPLETED" in proc.stderr


def test_no_job_reaches_another_jobs_channel(client: Client, dev: Job) -> None:
    other = _started(client, ["sleep", "600"], timeout_sec=120)
    try:
        probe = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            "    s.connect(sys.argv[1]); print('connected')\n"
            "except OSError as e:\n"
            "    print(e.errno)\n"
        )
        theirs = f"/var/lib/joblet/jobs/{other.id}/exec.sock"
        assert client.exec(dev.id, ["python3", "-c", probe, theirs]).text == "2\n"  # ENOENT
        # The job's own init is not reachable by the job either: its socket is the agent's.
        own = f"/var/lib/joblet/jobs/{dev.id}/exec.sock"
        assert client.exec(dev.id, ["python3", "-c", probe, own]).text == "2\n"
    finally:
        client.stop(other.id)


def test_only_the_owner_or_a_maintainer_may_exec(certs: dict[str, str]) -> None:
    with Client(config=certs["developer"]) as owner:
        job = _started(owner, ["sleep", "600"], timeout_sec=120)
        try:
            assert owner.exec(job.id, ["true"]).exit_code == 0
            for role, code in (("reader", "forbidden"), ("developer2", "forbidden")):
                with Client(config=certs[role]) as other, pytest.raises(RnxError) as refused:
                    other.exec(job.id, ["true"])
                assert refused.value.code == code, role
            with Client(config=certs["maintainer"]) as maintainer:
                assert maintainer.exec(job.id, ["true"]).exit_code == 0
        finally:
            owner.stop(job.id)


def test_a_sandbox_session_from_python(client: Client) -> None:
    """The README's example for agents: a job to work in for a block, gone after it."""
    with client.sandbox(timeout_sec=300, idle_timeout_sec=120) as sb:
        assert sb.job.state == "RUNNING"
        sb.write_file("/work/calc.py", "print(6 * 7)\n")
        done = sb.exec(["sh", "-c", "python3 /work/calc.py | tee /work/out.txt"])
        assert (done.exit_code, done.text) == (0, "42\n")
        assert sb.read_file("/work/out.txt") == b"42\n"
        assert {"calc.py", "out.txt"} <= {e.name for e in sb.list_files().entries}
        job_id = sb.id
    with pytest.raises(RnxError) as gone:
        client.get(job_id)
    assert gone.value.code == "not-found"


def test_init_waits_for_the_agent_after_the_exit_status(dev: Job) -> None:
    # The agent may still be writing (an end of stdin racing the command's exit) when init sends
    # the exit status; init keeps the connection until the agent closes it, so that write does
    # not fail (when it did, the agent lost the exit status it held: "the exec was lost").
    channel = socket.socket(socket.AF_UNIX)
    channel.settimeout(10)
    channel.connect(f"/var/lib/joblet/jobs/{dev.id}/exec.sock")  # as the agent does, as root
    with channel:
        channel.sendall(exec_request(["true"], {}, "/work", tty=False, stdin=True))
        kinds = b""
        while not kinds.endswith(b"x"):
            head = channel.recv(5, socket.MSG_WAITALL)
            assert len(head) == 5, f"init closed after {kinds!r}"
            kinds += head[:1]
            channel.recv(int.from_bytes(head[1:], "big"), socket.MSG_WAITALL)
        time.sleep(0.2)  # init has sent all it had: the command ended
        channel.sendall(frame(b"d"))  # EPIPE if init had gone
        channel.shutdown(socket.SHUT_WR)
        assert channel.recv(1) == b""  # and it goes once the agent's side is done
    assert kinds == b"px"
