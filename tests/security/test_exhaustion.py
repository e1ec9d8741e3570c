"""Exhaustion: a job that takes all it can of one resource is stopped by its cap, and meanwhile
systemd, the agent and other jobs keep working (probing.assert_host_responsive)."""

from __future__ import annotations

from typing import Any

import pytest

from joblet_agent.domain.config import JobPolicy
from rnx.client import Client
from tests.integration.conftest import wait_state
from tests.security.probing import (
    ENDED,
    assert_host_responsive,
    await_verdict,
    start_probe,
    stop_and_wait,
)

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
# The agent's default size cap of a job's private /tmp (and, with the volumes issue, of /work),
# assumed where the job record does not say.
DEFAULT_SIZE_CAP = 64 * MIB
# How much a fill probe writes at most: enough to pass any such cap, and a bounded cost to the
# host's disk where nothing caps the directory yet.
FILL_LIMIT = 4 * DEFAULT_SIZE_CAP
HOLD_SEC = "60"  # probes hold their take this long; each test stops its probe once done

QUIET_LINES = [f"quiet {n}" for n in range(1, 11)]
QUIET = (
    "import time\n"
    "for n in range(1, 11):\n"
    "    print(f'quiet {n}', flush=True)\n"
    "    time.sleep(0.1)\n"
)
# What joblet.yml's default rate limit lets through whole at any speed: jobs.log_lines (100,000)
# per jobs.log_interval (1 min), the least journald keeps (docs/security.md, "The journal").
FLOOD_LINES = JobPolicy().log_lines


def fill_until_full(client: Client, directory: str, cap: int, **limits: Any) -> None:
    """The probe fills `directory` until the kernel says it is full, within 5 % of `cap`."""
    job = start_probe(client, "exhaust", "fill", directory, str(FILL_LIMIT), HOLD_SEC, **limits)
    try:
        report = await_verdict(client, job.id)
        assert_host_responsive(client)  # while the directory is full
    finally:
        stop_and_wait(client, job.id)
    assert report["errno"] in ("ENOSPC", "EDQUOT"), (
        f"{directory} took {report['count']} bytes without running out of space: {report}"
    )
    # A little over the cap allows for the filesystem's own accounting.
    assert report["count"] <= cap * 1.05, f"{directory} took {report['count']} > cap {cap}"


def test_filling_tmp_stops_at_its_cap(client: Client) -> None:
    fill_until_full(client, "/tmp", DEFAULT_SIZE_CAP)  # joblet.yml's tmp_size: 64M, documented


def test_filling_work_stops_at_its_cap(client: Client) -> None:
    # The job's working directory is its /work, here a 64 MiB filesystem of its own.
    fill_until_full(client, ".", DEFAULT_SIZE_CAP, work_bytes=DEFAULT_SIZE_CAP)


def test_fork_bomb_stops_at_the_tasks_limit(client: Client) -> None:
    job = start_probe(client, "exhaust", "fork-bomb", HOLD_SEC, max_tasks=64, timeout_sec=120)
    try:
        report = await_verdict(client, job.id)
        assert report["errno"] == "EAGAIN", report
        # The bomb's other processes keep trying while we look.
        tasks = client.metrics(job.id).unit.tasks_current
        assert tasks is not None and tasks <= 64, f"{tasks} tasks under TasksMax=64"
        assert_host_responsive(client)
    finally:
        stop_and_wait(client, job.id)


def test_memory_bomb_is_oom_killed_and_its_neighbour_lives(client: Client) -> None:
    neighbour = client.run(["python3", "-c", QUIET])
    bomb = start_probe(client, "exhaust", "memory-bomb", str(1024 * MIB), memory_bytes=64 * MIB)
    final = wait_state(client, bomb.id, *ENDED, timeout=60)
    assert (final.state, final.result) == ("FAILED", "oom-kill"), final
    assert_host_responsive(client)
    assert wait_state(client, neighbour.id, *ENDED, timeout=30).state == "COMPLETED"
    assert list(client.logs(neighbour.id, follow=True)) == QUIET_LINES


def test_a_memory_bomb_without_limits_is_oom_killed_at_the_default(client: Client) -> None:
    default = JobPolicy().default_memory_bytes  # joblet.yml's jobs.default_memory
    assert default is not None
    bomb = start_probe(client, "exhaust", "memory-bomb", str(default + 256 * MIB))
    final = wait_state(client, bomb.id, *ENDED, timeout=60)
    assert (final.state, final.result) == ("FAILED", "oom-kill"), final
    assert final.spec.limits.memory_bytes == default  # recorded: rnx job run and status show it
    assert_host_responsive(client)


def test_log_flood_arrives_whole_and_so_does_a_quiet_neighbour(client: Client) -> None:
    flood = start_probe(client, "exhaust", "flood", str(FLOOD_LINES))
    quiet = client.run(["python3", "-c", QUIET])
    assert_host_responsive(client)  # while the flood is on
    for job in (flood, quiet):
        assert wait_state(client, job.id, *ENDED, timeout=120).state == "COMPLETED"
    lines = list(client.logs(flood.id, follow=True))
    expected = [f"flood {n}" for n in range(1, FLOOD_LINES + 1)]
    if lines != expected:
        first = next((i for i, pair in enumerate(zip(lines, expected)) if pair[0] != pair[1]), None)
        pytest.fail(
            f"{len(lines)} of {FLOOD_LINES} flood lines arrived; first difference at {first}"
        )  # not a 100,000-element diff
    assert list(client.logs(quiet.id, follow=True)) == QUIET_LINES


def test_a_thousand_files_and_sockets(client: Client) -> None:
    job = start_probe(client, "exhaust", "fds", "1000", "1000", HOLD_SEC)
    try:
        report = await_verdict(client, job.id)
        # A job may raise its soft RLIMIT_NOFILE to its hard one (prlimit64 is allowed:
        # docs/security.md) and then hold all 2,000: a lower limit would be a regression.
        assert (report["outcome"], report["count"]) == ("unlimited", 2000), report
        assert_host_responsive(client)  # while they are held open
    finally:
        stop_and_wait(client, job.id)
