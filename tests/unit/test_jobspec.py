"""Every bad job request is refused with the field, the value and what is allowed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from joblet_agent.domain.config import Enforcement, JobPolicy
from joblet_agent.domain.jobspec import parse_job_request
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.units.exec_channel import init_argv
from tests.unit.hosts import BARE_V2_HOST, HYBRID_HOST

POLICY = JobPolicy(max_timeout_sec=3600, max_io_bps=100 * 1024**2)


def refuse(
    request: dict[str, Any],
    *fragments: str,
    policy: JobPolicy = POLICY,
    host: Any = HYBRID_HOST,
    code: ErrorCode = ErrorCode.INVALID,
) -> str:
    with pytest.raises(JobletError) as info:
        parse_job_request(request, policy, host)
    assert info.value.code == code
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message
    return info.value.message


def limits(**values: Any) -> dict[str, Any]:
    return {"command": "true", "limits": values}


def test_minimal_request_gets_defaults() -> None:
    spec = parse_job_request({"command": "true"}, POLICY, HYBRID_HOST).spec
    assert spec.argv == ("true",)
    assert spec.limits.max_tasks == 512  # fork bombs are always contained
    assert spec.limits.memory_bytes == 1024**3  # joblet.yml's jobs.default_memory
    assert spec.limits.timeout_sec == 3600  # jobs.default_timeout (24h), within max_timeout


def test_defaults_are_recorded_within_the_maximums_and_asked_limits_win() -> None:
    small = JobPolicy(max_memory_bytes=256 * 1024**2, max_timeout_sec=60)
    limits = parse_job_request({"command": "true"}, small, HYBRID_HOST).spec.limits
    assert (limits.memory_bytes, limits.timeout_sec) == (256 * 1024**2, 60)
    asked = {"command": "true", "limits": {"memory_bytes": "2G", "timeout_sec": "48h"}}
    limits = parse_job_request(asked, JobPolicy(), HYBRID_HOST).spec.limits
    assert (limits.memory_bytes, limits.timeout_sec) == (2 * 1024**3, 48 * 3600)
    none = JobPolicy(default_memory_bytes=None, default_timeout_sec=None)
    limits = parse_job_request({"command": "true"}, none, HYBRID_HOST).spec.limits
    assert (limits.memory_bytes, limits.timeout_sec) == (None, None)


def test_a_default_memory_limit_the_host_cannot_enforce_is_a_warning() -> None:
    host = dataclasses.replace(HYBRID_HOST, controllers=HYBRID_HOST.controllers - {"memory"})
    validated = parse_job_request({"command": "true"}, JobPolicy(), host)
    assert any("default memory limit does not hold" in w for w in validated.warnings)
    with pytest.raises(JobletError) as refused:  # asked for: refused, as before
        parse_job_request({"command": "true", "limits": {"memory_bytes": "1G"}}, JobPolicy(), host)
    assert refused.value.code is ErrorCode.UNSUPPORTED


@pytest.mark.parametrize(
    ("request_", "fragments"),
    [
        ({}, ["command", "missing"]),
        ({"command": ""}, ["command", "''"]),
        ({"command": 5}, ["command", "5", "string"]),
        ({"command": "true", "args": "x"}, ["args", "list of strings"]),
        ({"command": "true", "args": ["a\0b"]}, ["args[0]", "NUL"]),
        ({"command": "true", "bogus": 1}, ["bogus", "unknown key"]),
        ({"command": "true", "env": {"JOB_ID": "x"}}, ["env.JOB_ID", "reserved"]),
        ({"command": "true", "env": {"LD_PRELOAD": "/x.so"}}, ["env.LD_PRELOAD", "reserved"]),
        ({"command": "true", "env": {"1BAD": "x"}}, ["env.1BAD", "letters"]),
        ({"command": "true", "env": {"A": 1}}, ["env.A", "string"]),
        ({"command": "true", "env": {"A": "1"}, "secret_env": {"A": "2"}}, ["secret_env.A"]),
        ({"command": "true", "workdir": "/etc"}, ["workdir", "'/etc'", "relative"]),
        ({"command": "true", "workdir": "a/../../x"}, ["workdir", "relative"]),
        ({"command": "true", "name": "Bad_Name"}, ["name", "'Bad_Name'", "hostname"]),
        (limits(cpu_percent=0), ["limits.cpu_percent", "0", "minimum is 1"]),
        (limits(cpu_percent=-5), ["limits.cpu_percent", "-5"]),
        (limits(cpu_percent=401), ["limits.cpu_percent", "401", "maximum is 400"]),
        (limits(cpu_percent="50"), ["limits.cpu_percent", "whole number"]),
        (limits(cpu_percent=True), ["limits.cpu_percent", "whole number"]),
        (limits(memory_bytes="lots"), ["limits.memory_bytes", "'lots'", "512M"]),
        (limits(memory_bytes=0), ["limits.memory_bytes", "minimum"]),
        (limits(memory_bytes="1T"), ["limits.memory_bytes", "maximum"]),
        (limits(io_read_bps=0), ["limits.io_read_bps", "minimum is 1048576"]),
        (limits(io_write_bps="1G"), ["limits.io_write_bps", "maximum"]),
        (limits(cpu_cores="1-0"), ["limits.cpu_cores", "reversed"]),
        (limits(cpu_cores="0,,1"), ["limits.cpu_cores", "CPU list"]),
        (limits(cpu_cores="a"), ["limits.cpu_cores", "CPU list"]),
        (limits(cpu_cores="0-7"), ["limits.cpu_cores", "CPU 4 does not exist", "0-3"]),
        (limits(max_tasks=2), ["limits.max_tasks", "2", "minimum is 3"]),
        (limits(max_tasks=10**9), ["limits.max_tasks", "maximum"]),
        (limits(timeout_sec=0), ["limits.timeout_sec", "minimum"]),
        (limits(timeout_sec="soon"), ["limits.timeout_sec", "duration"]),
        (limits(timeout_sec="2h"), ["limits.timeout_sec", "maximum is 3600"]),
        (limits(gpus=1), ["limits.gpus", "unknown key"]),
    ],
)
def test_bad_values_are_refused_naming_field_and_value(
    request_: dict[str, Any], fragments: list[str]
) -> None:
    refuse(request_, *fragments)


def test_request_must_be_a_mapping() -> None:
    refuse(["true"], "expected a mapping")  # type: ignore[arg-type]


def test_units_are_converted() -> None:
    spec = parse_job_request(
        limits(memory_bytes="64M", cpu_cores=[3, 1, 1], timeout_sec="1.5m"), POLICY, HYBRID_HOST
    ).spec
    assert spec.limits.memory_bytes == 64 * 1024**2
    assert spec.limits.cpu_cores == (1, 3)
    assert spec.limits.timeout_sec == 90


def test_limit_the_host_cannot_enforce_is_refused_with_why() -> None:
    message = refuse(
        limits(memory_bytes="64M"),
        "memory",
        "cannot enforce",
        host=BARE_V2_HOST,
        code=ErrorCode.UNSUPPORTED,
    )
    assert "unified" in message


def test_config_may_downgrade_unenforceable_to_warning() -> None:
    policy = JobPolicy(unenforceable_limits=Enforcement.WARN)
    result = parse_job_request(limits(memory_bytes="64M"), policy, BARE_V2_HOST)
    assert any("memory" in w for w in result.warnings)
    assert any("pids" in w for w in result.warnings)


def test_core_pinning_is_enforced_without_cpuset_controller() -> None:
    # CPUAffinity works on every host, so pinning is never refused for lack of a controller.
    spec = parse_job_request(limits(cpu_cores="1"), POLICY, BARE_V2_HOST).spec
    assert spec.limits.cpu_cores == (1,)


# -- bounds on every part of a request, checked before it is used ----------------------------


@pytest.mark.parametrize(
    ("request_", "fragments"),
    [
        ({"command": "x" * 5000}, ["command: 'xxx", "...", "5000 characters long", "at most 4096"]),
        ({"command": "true", "args": ["a"] * 1025}, ["args: 1025 items; at most 1024"]),
        (
            {"command": "true", "args": ["ok", "y" * 40000]},
            ["args[1]: 'yyy", "40000 characters long", "at most 32768"],
        ),
        (
            {"command": "true", "env": {f"V{i}": "" for i in range(257)}},
            ["env: 257 items; at most 256"],
        ),
        (
            {"command": "true", "env": {"N" * 200: "x"}},
            ["env: a name 'NNN", "200 characters long", "at most 128"],
        ),
        (
            {"command": "true", "env": {"BIG": "v" * 40000}},
            ["env.BIG: 'vvv", "40000 characters long", "at most 32768"],
        ),
        ({"command": "true", "workdir": "d/" * 3000}, ["workdir: 'd/d/", "at most 4096"]),
        ({"command": "true", "relax": ["x"] * 17}, ["relax: 17 items; at most 16"]),
        (
            {"command": "true", "network": "isolated", "allow_egress": ["1.1.1.1"] * 65},
            ["allow_egress: 65 items; at most 64"],
        ),
    ],
)
def test_every_part_of_a_request_is_bounded(request_: dict[str, Any], fragments: list[str]) -> None:
    message = refuse(request_, *fragments)
    assert len(message) < 300, message  # an excerpt of the value, never all of it


@pytest.mark.parametrize(
    "secret_env",
    [
        {"TOKEN": "s3cret\0tail"},  # audit L11: the NUL-byte error quoted the value
        {"TOKEN": "s3cret" * 10000},
        {"TOKEN": ["s3cret"]},
    ],
)
def test_errors_about_secret_values_never_show_them(secret_env: dict[str, Any]) -> None:
    message = refuse({"command": "true", "secret_env": secret_env}, "secret_env.TOKEN")
    assert "s3cret" not in message


def test_a_value_is_quoted_as_a_short_excerpt() -> None:
    message = refuse({"command": "true", "workdir": "/" + "a" * 1000}, "workdir: '/aaa")
    assert "a" * 100 not in message and "..." in message


def test_a_terminal_or_stdin_for_the_jobs_command() -> None:
    plain = parse_job_request({"command": "true"}, POLICY, HYBRID_HOST).spec
    assert (plain.tty, plain.stdin) == (False, False)
    tty = parse_job_request({"command": "python3", "tty": True}, POLICY, HYBRID_HOST).spec
    assert (tty.tty, tty.stdin) == (True, True)  # a terminal is its stdin too
    piped = parse_job_request({"command": "wc", "stdin": True}, POLICY, HYBRID_HOST).spec
    assert (piped.tty, piped.stdin) == (False, True)
    assert type(tty).from_dict(tty.to_dict(with_secrets=True)) == tty  # kept in the job's record
    assert init_argv("/usr/bin/wc", ("wc",), stdin=True)[1:3] == ["--stdin", "--"]
    assert init_argv("/usr/bin/python3", ("python3",), tty=True, stdin=True)[1:3] == ["--tty", "--"]
    refuse({"command": "true", "tty": "yes"}, "tty")
