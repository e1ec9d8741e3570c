"""rnx's one ladder from errors to exit codes (rnx.cli.RnxGroup and rnx.exit_codes): every error
is shown as `Error: ...` (and `Hint: ...`) on stderr and exits with its code's number, as
`rnx --help` and the README document."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rnx.cli import cli
from rnx.exit_codes import EXIT_CODES, INTERRUPTED, OTHER, exit_code_for
from tests.unit.fake_agent import JOB_ID, FakeAgent, error, fake_agent, job, log_stream


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[FakeAgent]:
    with fake_agent(tmp_path) as fake:
        yield fake


def rnx(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# The agent's codes (docs/openapi.yaml, Error.code) and rnx's own, with their documented exits.
@pytest.mark.parametrize(
    ("code", "status", "exit_code"),
    [
        ("invalid", 400, 2),
        ("too-large", 413, 2),
        ("not-found", 404, 3),
        ("ambiguous", 409, 3),
        ("conflict", 409, 4),
        ("unsupported", 422, 5),
        ("unauthenticated", 401, 6),
        ("forbidden", 403, 6),
        ("systemd", 502, 8),
        ("config", 500, 9),
        ("too-many", 429, 1),
        ("busy", 503, 1),
        ("method-not-allowed", 405, 1),
        ("internal", 500, 1),
    ],
)
def test_each_error_code_of_the_agent_exits_with_its_number(
    agent: FakeAgent, code: str, status: int, exit_code: int
) -> None:
    agent.answer("GET /v1/jobs/x1", error(code, f"a {code} error", "do this instead"), status)
    result = rnx("--socket", agent.socket, "job", "status", "x1")
    assert result.exit_code == exit_code
    assert result.stdout == ""
    assert result.stderr == f"Error: a {code} error\nHint: do this instead\n"


def test_the_table_is_the_documented_one() -> None:
    documented = re.sub(r"\s+", " ", cli.help or "")
    assert (
        "Exit codes: 0 ok; 1 other error; 2 bad input; 3 not found or ambiguous; 4 conflict "
        "(e.g. deleting a running job); 5 the host cannot enforce a limit; 6 not allowed or "
        "not authenticated; 7 agent unreachable; 8 systemd refused; 9 bad rnx configuration."
    ) in documented
    assert set(EXIT_CODES.values()) == {2, 3, 4, 5, 6, 7, 8, 9}
    assert exit_code_for("a-code-from-the-future") == OTHER == 1
    assert INTERRUPTED == 130


def test_an_agent_that_is_not_there_is_7_with_a_hint(tmp_path: Path) -> None:
    result = rnx("--socket", str(tmp_path / "none.sock"), "job", "list")
    assert result.exit_code == 7
    assert result.stderr.startswith("Error: cannot reach the Joblet agent at unix:")
    assert "Hint: is joblet.socket active there?" in result.stderr


def test_a_bad_configuration_is_9(tmp_path: Path) -> None:
    result = rnx("--config", str(tmp_path / "missing.yml"), "job", "list")
    assert (result.exit_code, result.stderr) == (
        9,
        f"Error: {tmp_path}/missing.yml: no such file\n",
    )


def test_an_answer_rnx_cannot_read_is_1_naming_the_field(agent: FakeAgent) -> None:
    agent.answer(f"GET /v1/jobs/{JOB_ID}", job(state="HIBERNATING"))
    result = rnx("--socket", agent.socket, "job", "status", JOB_ID)
    assert result.exit_code == 1
    assert "Error: the agent's answer: job.state: expected a job state, got 'HIBERNATING'" in (
        result.stderr
    )


def test_bad_flags_are_2_and_nothing_is_sent(agent: FakeAgent) -> None:
    result = rnx("--socket", agent.socket, "job", "run", "--max-memory", "lots", "--", "true")
    assert result.exit_code == 2
    assert "Invalid value for --max-memory: 'lots' is not a size" in result.stderr
    bad_volume = rnx("--socket", agent.socket, "job", "run", "--volume", "v:rx", "--", "true")
    assert bad_volume.exit_code == 2
    assert bad_volume.stderr == "Error: --volume: 'v:rx' is not valid; NAME, NAME:ro or NAME:rw\n"
    assert agent.requests == []


def test_an_attached_run_exits_with_the_jobs_code_a_detached_one_with_0(agent: FakeAgent) -> None:
    agent.answer("POST /v1/jobs", job(state="SCHEDULED", exit_code=None), 201)
    end = {"id": JOB_ID, "state": "FAILED", "exit_code": 3, "signal": None, "reason": "exit 3"}
    agent.answer(f"GET /v1/jobs/{JOB_ID}/logs", log_stream(["working"], end))
    attached = rnx("--socket", agent.socket, "job", "run", "--", "sh", "-c", "exit 3")
    assert (attached.exit_code, attached.stdout) == (3, "working\n")
    assert attached.stderr.endswith(f"Job {JOB_ID} FAILED: exit 3\n")
    detached = rnx("--socket", agent.socket, "job", "run", "-d", "--", "sh", "-c", "exit 3")
    assert (detached.exit_code, detached.stdout) == (0, f"{JOB_ID}\n")
