"""joblet.yml: defaults when absent, one clear message naming file, key and reason when broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from joblet_agent.config import AgentConfig, Enforcement, load_config
from joblet_agent.errors import ErrorCode, JobletError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "joblet.yml"
    path.write_text(text)
    return path


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.yml") == AgentConfig()


def test_full_file_is_read(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
state_dir: /srv/joblet
jobs:
  default_max_tasks: 256
  max_tasks: 1024
  stop_grace: 5s
  max_cpu: 200
  max_memory: 2G
  max_iobps: 50M
  max_timeout: 1h
  default_timeout: 10m
  unenforceable_limits: warn
  upload_timeout: 20m
  upload_min_rate: 64K
""",
        )
    )
    assert config.jobs.upload_timeout_sec == 1200
    assert config.jobs.upload_min_bytes_per_sec == 64 * 1024
    assert config.state_dir == Path("/srv/joblet")
    assert config.jobs.max_memory_bytes == 2 * 1024**3
    assert config.jobs.stop_grace_sec == 5
    assert config.jobs.max_timeout_sec == 3600
    assert config.jobs.default_timeout_sec == 600
    assert config.jobs.unenforceable_limits is Enforcement.WARN


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("jobs: [1, 2]", ["jobs", "mapping"]),
        ("jobz: {}", ["jobz", "unknown key"]),
        ("jobs:\n  max_memory: lots", ["jobs.max_memory", "'lots'"]),
        ("jobs:\n  max_tasks: 0", ["jobs.max_tasks", "minimum is 1"]),
        ("jobs:\n  default_max_tasks: 900\n  max_tasks: 100", ["default_max_tasks", "at most"]),
        ("jobs:\n  stop_grace: forever", ["jobs.stop_grace", "duration"]),
        ("jobs:\n  unenforceable_limits: maybe", ["unenforceable_limits", "refuse, warn"]),
        ("jobs:\n  upload_timeout: 0s", ["jobs.upload_timeout", "from 1s to 7d"]),
        ("jobs:\n  upload_timeout: .nan", ["jobs.upload_timeout", "from 1s to 7d"]),
        ("jobs:\n  upload_min_rate: 0", ["jobs.upload_min_rate", "minimum is 1"]),
        ("jobs:\n  upload_min_rate: fast", ["jobs.upload_min_rate", "'fast'"]),
        ("state_dir: relative/dir", ["state_dir", "absolute"]),
        ("slice: user", ["slice", ".slice"]),
        ("jobs: {max_cpu: '10'", ["not valid YAML"]),
    ],
)
def test_broken_file_names_file_key_and_reason(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(JobletError) as info:
        load_config(path)
    assert info.value.code == ErrorCode.CONFIG
    assert str(path) in info.value.message
    for fragment in fragments:
        assert fragment in info.value.message
