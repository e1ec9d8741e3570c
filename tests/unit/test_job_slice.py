"""joblet.slice's caps: joblet.yml's all_jobs, else computed from the host, set at each start."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from joblet_agent.adapters.config_file import load_config
from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.job_slice import (
    SliceCaps,
    default_cpu_percent,
    default_memory,
    default_tasks,
)
from joblet_agent.errors import JobletError
from joblet_agent.services.job.slice_caps import cap_jobs_slice
from joblet_agent.units.job_slice import slice_properties
from tests.unit.fakes import FakeSystemd
from tests.unit.hosts import HYBRID_HOST

GIB = 1024**3


@pytest.mark.parametrize(
    ("total", "expected"),
    [(24 * GIB, 24 * GIB - 24 * GIB // 10), (4 * GIB, 3 * GIB), (3 * GIB // 2, 3 * GIB // 4)],
)
def test_the_host_keeps_a_tenth_of_its_memory_at_least_a_gib_at_most_half(
    total: int, expected: int
) -> None:
    assert default_memory(total) == expected


def test_tasks_and_cpu_leave_the_host_a_share() -> None:
    assert default_tasks(192_739) == 154_191
    assert [default_cpu_percent(n) for n in (1, 2, 16, 64)] == [50, 150, 1440, 5760]


def test_joblet_yml_wins_and_the_host_fills_in_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "joblet.yml"
    path.write_text("all_jobs:\n  memory: 2G\n  cpu: 120\n")
    caps = load_config(path).all_jobs
    assert caps == SliceCaps(memory_bytes=2 * GIB, tasks=None, cpu_percent=120)
    host = dataclasses.replace(HYBRID_HOST, task_limit=10_000)
    assert caps.for_host(host) == SliceCaps(2 * GIB, 8_000, 120)
    assert SliceCaps().for_host(HYBRID_HOST) == SliceCaps(
        memory_bytes=default_memory(8 * GIB), tasks=None, cpu_percent=350
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("all_jobs:\n  memory: 1M", "all_jobs.memory"),
        ("all_jobs:\n  tasks: 3", "all_jobs.tasks"),
        ("all_jobs:\n  cpu: 5", "all_jobs.cpu"),
        ("all_jobs:\n  disk: 1G", "unknown key"),
    ],
)
def test_bad_caps_are_refused(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "joblet.yml"
    path.write_text(text)
    with pytest.raises(JobletError) as refused:
        load_config(path)
    assert fragment in refused.value.message


def test_the_slice_is_capped_at_start() -> None:
    pid1 = FakeSystemd(lambda _event: None)
    host = dataclasses.replace(HYBRID_HOST, task_limit=1000)
    caps = asyncio.run(cap_jobs_slice(pid1, AgentConfig(), host))
    assert pid1.limits["joblet.slice"] == slice_properties(caps)
    assert [(p.name, p.value) for p in slice_properties(caps)][3:] == [
        ("MemoryMax", default_memory(8 * GIB)),
        ("TasksMax", 800),
        ("CPUQuotaPerSecUSec", 3_500_000),
    ]
