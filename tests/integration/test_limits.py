"""Limits proven by effect against the real systemd: OOM kill, CPU share, tasks, IO, pinning."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rnx.client import Client, Job
from tests.integration.conftest import sh, unit_property, wait_state

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


def test_shell_fork_bomb_is_contained(client: Client) -> None:
    job = client.run(["bash", "-c", ":(){ :|:& };:; sleep 5"], max_tasks=64, timeout_sec=5)
    try:
        time.sleep(2)
        tasks = client.metrics(job.id).unit.tasks_current
        assert tasks is not None and tasks <= 64
        assert client.health().status == "ok"
    finally:
        wait_state(client, job.id, "TIMEOUT", "COMPLETED", "FAILED", timeout=30)


def test_io_write_bandwidth_is_throttled(client: Client) -> None:
    # Direct IO: cgroup v1's blkio throttles only writes that reach the device synchronously.
    cmd = "dd if=/dev/zero of=blob bs=1M count=12 oflag=direct 2>&1 | tail -1"
    job = client.run(["sh", "-c", cmd], io_write_bps=4 * 1024 * 1024)
    final = wait_state(client, job.id, "COMPLETED", "FAILED", timeout=60)
    assert final.state == "COMPLETED"
    started = final.started_at
    ended = final.ended_at
    assert started is not None and ended is not None
    took = (ended - started).total_seconds()
    # 12 MiB at 4 MiB/s needs about 3 s (the first second's burst is allowed by the throttle).
    assert took >= 1.8, f"12 MiB written in {took:.2f}s despite a 4 MiB/s limit"


def test_cpu_pinning_applies(client: Client) -> None:
    job = client.run(
        ["python3", "-c", "import os; print(sorted(os.sched_getaffinity(0)))"], cpu_cores="1"
    )
    wait_state(client, job.id, "COMPLETED")
    assert list(client.logs(job.id, follow=False)) == ["[1]"]
