"""Limits proven by effect against the real systemd: OOM kill, CPU share, tasks, IO, pinning."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rnx.client import Client, Job
from tests.integration.conftest import rnx, sh, unit_property, wait_state
from tests.security.probing import ENDED, outside_a_job, run_probe

BUSY_LOOP = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"


def test_memory_bomb_is_oom_killed(client: Client) -> None:
    job = client.run(
        ["python3", "-c", "b = bytearray(200 * 1024 * 1024); print('survived')"],
        memory_bytes=64 * 1024 * 1024,
    )
    final = wait_state(client, job.id, "COMPLETED", "FAILED")
    assert final.state == "FAILED"
    assert final.result == "oom-kill", final
    assert str(final.reason).startswith("oom-kill")
    assert "survived" not in list(client.logs(job.id, follow=False))


def cpu_seconds(job: Job) -> float:
    """CPU time of the job's busy process: CPUUsageNSec where systemd has it, else /proc.

    This machine mounts cpu and cpuacct as separate cgroup v1 hierarchies; systemd 252 assumes
    them joined and never creates the cpuacct group, so CPUUsageNSec stays unset here. The
    utime+stime of the unit's processes (the busy one, and joblet-init, its idle parent)
    measures the same thing.
    """
    unit = str(job.unit)
    usage = unit_property(unit, "CPUUsageNSec")
    if usage.isdigit():
        return int(usage) / 1e9
    group = unit_property(unit, "ControlGroup")
    procs = Path(f"/sys/fs/cgroup/unified{group}/cgroup.procs")
    if not procs.exists():
        procs = Path(f"/sys/fs/cgroup{group}/cgroup.procs")
    ticks = 0
    for pid in procs.read_text().split():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def test_cpu_quota_holds_a_busy_loop_at_20_percent(client: Client) -> None:
    job = client.run(["python3", "-c", BUSY_LOOP], cpu_percent=20)
    try:
        wait_state(client, job.id, "RUNNING")
        time.sleep(0.5)  # let the interpreter start
        start_cpu, start = cpu_seconds(job), time.monotonic()
        time.sleep(3)
        share = (cpu_seconds(job) - start_cpu) / (time.monotonic() - start) * 100
    finally:
        client.stop(job.id)
    assert 15 <= share <= 25, f"busy loop used {share:.1f}% of one core under a 20% quota"


def test_fork_bomb_stops_at_tasks_limit_and_agent_answers(client: Client) -> None:
    # Counts the children it managed to fork before the kernel said EAGAIN.
    bomb = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 10000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print('blocked after', n, 'forks:', e.strerror, flush=True)\n"
        "time.sleep(60)\n"
    )
    job = client.run(["python3", "-c", bomb], max_tasks=40)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while not any("blocked after" in line for line in lines):
            assert time.monotonic() < deadline, "the fork bomb was never stopped"
            time.sleep(0.2)
            lines = list(client.logs(job.id, follow=False))
        line = next(line for line in lines if "blocked after" in line)
        forks = int(line.split()[2])
        assert 30 <= forks < 40, line  # the python process itself is one of the 40 tasks
        assert "Resource temporarily unavailable" in line
        # The agent keeps answering and the sandbox's PID 1 too.
        assert client.health().status == "ok"
        assert sh("systemctl", "is-system-running", check=False).strip() in ("running", "degraded")
        tasks = client.metrics(job.id).unit.tasks_current
        assert tasks is not None and tasks <= 40
    finally:
        client.stop(job.id)


def test_a_fork_bomb_stops_at_the_default_tasks_max(client: Client) -> None:
    """README: `default_max_tasks: 512 # always applied: fork bombs are contained`, for a job
    that asked for no limit: its forks are refused (EAGAIN) at the cap, and reach it."""
    bomb = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 5000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print(n, e.strerror, flush=True)\n"
    )
    job = client.run(["python3", "-c", bomb])
    try:
        assert job.spec.limits.max_tasks == 512
        final = wait_state(client, job.id, *ENDED, timeout=60)
        (line,) = list(client.logs(job.id, follow=True))
        forks, error = int(line.split()[0]), line.split(maxsplit=1)[1]
        assert (error, final.exit_code) == ("Resource temporarily unavailable", 0)
        assert 500 <= forks < 512, line  # the python process itself is one of the 512
    finally:
        if not client.get(job.id).state.ended:
            client.stop(job.id)


def test_shell_fork_bomb_is_contained(client: Client) -> None:
    """The bomb reaches the cap (it forks as fast as it can) and never passes it."""
    job = client.run(["bash", "-c", ":(){ :|:& };:; sleep 5"], max_tasks=64, timeout_sec=5)
    try:
        most, deadline = 0, time.monotonic() + 4
        while most < 60 and time.monotonic() < deadline:
            most = max(most, client.metrics(job.id).unit.tasks_current or 0)
        assert 60 <= most <= 64, f"the bomb reached {most} tasks under a cap of 64"
        assert client.health().status == "ok"
    finally:
        wait_state(client, job.id, "TIMEOUT", "COMPLETED", "FAILED", timeout=30)


# Direct IO: cgroup v1's blkio throttles only IO that reaches the device synchronously. The job's
# /work is a loop-mounted image whose loop device issues its IO from the job's own cgroup. dd's
# own summary (stderr, in the job's log) gives each copy's rate; the exit status is dd's.
DD_WRITE_THEN_READ = (
    "dd if=/dev/zero of=blob bs=1M count=12 oflag=direct"
    " && dd if=blob of=/dev/null bs=1M iflag=direct"
)
MIB = 1024 * 1024
LIMIT = 4 * MIB


def dd_rates(lines: list[str]) -> list[float]:
    """Bytes/s of each dd summary: '12582912 bytes (13 MB, 12 MiB) copied, 2.9 s, 4.3 MB/s'."""
    rates = []
    for line in lines:
        if " bytes " in line and " copied, " in line:
            copied = int(line.split()[0])
            seconds = float(line.split(" copied, ")[1].split(" s")[0])
            rates.append(copied / seconds)
    return rates


def test_io_bandwidth_limits_writes_and_reads_by_effect(client: Client) -> None:
    """`rnx job run --max-iobps=4M` (both directions) against the same dd without a limit: each
    throttled copy runs at the limit (a throttle slice's burst allowed), the control at least
    twice as fast, so the limit is what slowed it."""
    control = client.run(["sh", "-c", DD_WRITE_THEN_READ])
    assert wait_state(client, control.id, *ENDED, timeout=60).state == "COMPLETED"
    free = dd_rates(list(client.logs(control.id, follow=True)))
    result = rnx("job", "run", f"--max-iobps={LIMIT // MIB}M", "--", "sh", "-c", DD_WRITE_THEN_READ)
    assert result.returncode == 0, result.stderr
    throttled = dd_rates(result.stdout.splitlines() + result.stderr.splitlines())
    assert len(free) == len(throttled) == 2, (free, throttled)
    figures = [f"{r / MIB:.1f} MiB/s" for r in (*free, *throttled)]
    for unlimited, limited in zip(free, throttled, strict=True):
        assert unlimited >= 2 * LIMIT, f"the control ran at {figures}: too slow to show a limit"
        assert limited <= 1.25 * LIMIT, f"write, read under a 4 MiB/s limit: {figures[2:]}"


def test_cpu_pinning_holds_by_effect(client: Client) -> None:
    """Pinned to CPU 1: a busy loop runs only there (the `processor` field of /proc/self/stat),
    and widening its own mask fails (EPERM: the seccomp filter's @resources; on cgroup v1 hosts
    AllowedCPUs= is not enforced, so nothing else would hold it). The control: the same probe
    pinned with taskset, outside a job as nobody, does widen its mask."""
    loop = (
        "import os, time\n"
        "seen, end = set(), time.monotonic() + 1\n"
        "while time.monotonic() < end:\n"
        "    seen.add(int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[36]))\n"
        "print(sorted(os.sched_getaffinity(0)), sorted(seen))\n"
    )
    job = client.run(["python3", "-c", loop], cpu_cores="1")
    assert wait_state(client, job.id, *ENDED).state == "COMPLETED"
    assert list(client.logs(job.id, follow=True)) == ["[1] [1]"]
    assert outside_a_job("widen-affinity", cpus="1")["outcome"] == "escaped"
    widen = run_probe(client, "attempt", "widen-affinity", cpu_cores="1")
    assert (widen["outcome"], widen["errno"]) == ("blocked", "EPERM"), widen
