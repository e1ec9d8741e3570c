"""joblet.yml: defaults when absent, one clear message naming file, key and reason when broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from joblet_agent.adapters.config_file import load_config
from joblet_agent.domain.config import AgentConfig, Connections, Enforcement
from joblet_agent.errors import ErrorCode, JobletError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "joblet.yml"
    path.write_bytes(text.encode(errors="surrogateescape"))
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


def test_connection_limits_are_read(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
connections:
  max_tcp: 200
  max_tcp_per_peer: 20
  max_local: 50
  max_local_per_user: 5
  tls_handshake_timeout: 3s
  idle_timeout: 1m
  header_timeout: 20s
  body_timeout: 2m
""",
        )
    )
    assert config.connections == Connections(
        max_tcp=200,
        max_tcp_per_peer=20,
        max_local=50,
        max_local_per_user=5,
        tls_handshake_timeout_sec=3,
        idle_timeout_sec=60,
        header_timeout_sec=20,
        body_timeout_sec=120,
    )


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
        ("log_streams:\n  max: 0", ["log_streams.max", "minimum is 1"]),
        ("log_streams:\n  max: 8\n  max_per_caller: 9", ["max_per_caller", "at most max (8)"]),
        ("log_streams:\n  write_timeout: 0.5s", ["log_streams.write_timeout", "minimum is 1"]),
        ("log_streams:\n  idle: 5s", ["log_streams.idle", "unknown key"]),
        ("jobs: &j {}\naccess: *j", ["not valid YAML", "anchors and aliases are not allowed"]),
        ("jobs:\n  upload_timeout: 0s", ["jobs.upload_timeout", "from 1s to 7d"]),
        ("jobs:\n  upload_timeout: .nan", ["jobs.upload_timeout", "not a number"]),
        ("jobs:\n  upload_min_rate: 0", ["jobs.upload_min_rate", "minimum is 1"]),
        ("jobs:\n  upload_min_rate: fast", ["jobs.upload_min_rate", "'fast'"]),
        ("state_dir: relative/dir", ["state_dir", "absolute"]),
        ("jobs:\n  default_memory: 8G\n  max_memory: 4G", ["default_memory", "at most max_memory"]),
        ("jobs:\n  default_memory: 1M", ["jobs.default_memory", "at least"]),
        ("jobs:\n  default_timeout: 2h\n  max_timeout: 1h", ["default_timeout", "max_timeout"]),
        ("jobs:\n  log_lines: 0", ["jobs.log_lines", "minimum is 1"]),
        ("jobs:\n  work_retention: 0s", ["jobs.work_retention", "minimum is 1"]),
        ("networks:\n  allow_private: [10.0.0.1/24]", ["allow_private[0]", "host bits set"]),
        ("jobs:\n  upload_retention: 30d", ["jobs.upload_retention", "maximum is 604800"]),
        ("jobs:\n  log_interval: 0.5s", ["jobs.log_interval", "from 1s to 7d"]),
        ("slice: user", ["slice", ".slice"]),
        ("jobs: {max_cpu: '10'", ["not valid YAML"]),
        ("connections:\n  max_tcp: 0", ["connections.max_tcp", "minimum is 1"]),
        ("connections:\n  max_tcp: 10\n  max_tcp_per_peer: 20", ["max_tcp_per_peer", "at most"]),
        ("connections:\n  max_local_per_user: 999", ["max_local_per_user", "at most max_local"]),
        ("connections:\n  tls_handshake_timeout: 5m", ["tls_handshake_timeout", "maximum is 60"]),
        ("connections:\n  idle_timeout: soon", ["connections.idle_timeout", "duration"]),
        ("connections:\n  header_timeout: 0", ["connections.header_timeout", "minimum is 1"]),
        ("connections:\n  max_conns: 5", ["connections.max_conns", "unknown key"]),
        # Read no further than the bound: a runaway file is refused before YAML sees it.
        ("# " + "x" * (1 << 20), ["larger than 1048576 bytes"]),
        ("jobs: {}\n# \udcff", ["not UTF-8"]),
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


def test_log_stream_caps_are_read(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "log_streams:\n  max: 10\n  max_per_caller: 2\n  write_timeout: 2m\n")
    )
    assert (config.log_streams.max, config.log_streams.max_per_caller) == (10, 2)
    assert config.log_streams.write_timeout_sec == 120


def test_the_log_rate_limit_is_read(tmp_path: Path) -> None:
    defaults = load_config(tmp_path / "absent.yml").jobs
    assert (defaults.log_lines, defaults.log_interval_sec) == (100_000, 60)
    jobs = load_config(write(tmp_path, "jobs:\n  log_lines: 500\n  log_interval: 10s\n")).jobs
    assert (jobs.log_lines, jobs.log_interval_sec) == (500, 10)


def test_job_defaults_are_read(tmp_path: Path) -> None:
    defaults = load_config(tmp_path / "absent.yml").jobs
    assert (defaults.default_memory_bytes, defaults.default_timeout_sec) == (1024**3, 86400)
    text = "jobs:\n  default_memory: 2G\n  default_timeout: 1h\n"
    jobs = load_config(write(tmp_path, text)).jobs
    assert (jobs.default_memory_bytes, jobs.default_timeout_sec) == (2 * 1024**3, 3600)
    off = load_config(write(tmp_path, "jobs:\n  default_memory: null\n  default_timeout: null\n"))
    assert (off.jobs.default_memory_bytes, off.jobs.default_timeout_sec) == (None, None)
    # A smaller maximum lowers the built-in defaults instead of refusing them.
    small = load_config(write(tmp_path, "jobs:\n  max_memory: 512M\n  max_timeout: 10m\n")).jobs
    assert (small.default_memory_bytes, small.default_timeout_sec) == (512 * 1024**2, 600)


def test_retention_times_are_read(tmp_path: Path) -> None:
    defaults = load_config(tmp_path / "absent.yml").jobs
    assert (defaults.work_retention_sec, defaults.upload_retention_sec) == (86400, 900)
    text = "jobs:\n  work_retention: null\n  upload_retention: 2m\n"
    jobs = load_config(write(tmp_path, text)).jobs
    assert (jobs.work_retention_sec, jobs.upload_retention_sec) == (None, 120)


def test_private_prefixes_nat_networks_may_reach_are_read(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.yml").allow_private == ()
    text = "networks:\n  allow_private: [10.0.0.0/24, 169.254.169.254/32]\n"
    config = load_config(write(tmp_path, text))
    assert [str(p) for p in config.allow_private] == ["10.0.0.0/24", "169.254.169.254/32"]
