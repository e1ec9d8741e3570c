"""What rnx shows people of text it did not write: job arguments, names, reasons and output come
from other users' jobs (review L1). Rich markup and emoji codes in them are shown as they are,
and job output on a terminal loses its control characters unless --raw."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnx.cli import cli
from tests.unit.fake_agent import JOB_ID, FakeAgent, fake_agent, job, log_stream, network, runtime

REPO = Path(__file__).parents[2]
MARKUP = ["[/bold]", "[green]COMPLETED[/]", ":thumbs_up:"]
# OSC 52 (write the clipboard), a title, clear the screen, a C1 CSI, BEL and backspace.
HOSTILE = "a\x1b]52;c;ZXZpbA==\x07b\x1b]0;owned\x07c\x1b[2Jd\x9b31me\x08f\tg"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[FakeAgent]:
    with fake_agent(tmp_path) as fake:
        yield fake


def rnx(agent: FakeAgent, *args: str) -> tuple[int, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["--socket", agent.socket, *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_job_list_shows_markup_in_arguments_as_text(agent: FakeAgent) -> None:
    agent.answer("GET /v1/jobs", {"jobs": [job(args=MARKUP)], "limit": 100, "offset": 0})
    code, out = rnx(agent, "job", "list")
    assert code == 0, out
    assert "[/bold] [green]COMPLETED[/] :thumbs_up:" in out


def test_job_status_shows_markup_in_arguments_reason_and_warnings_as_text(
    agent: FakeAgent,
) -> None:
    failed = job(
        args=MARKUP,
        state="FAILED",
        exit_code=1,
        reason="[red]disk[/red] full",
        warnings=["[/yellow]"],
    )
    agent.answer(f"GET /v1/jobs/{JOB_ID}", failed)
    code, out = rnx(agent, "job", "status", JOB_ID)
    assert code == 0, out
    assert "python3 [/bold] [green]COMPLETED[/] :thumbs_up:" in out
    assert "Reason:         [red]disk[/red] full" in out
    assert "Warning:        [/yellow]" in out


def test_tables_and_details_drop_control_characters(agent: FakeAgent) -> None:
    agent.answer("GET /v1/jobs", {"jobs": [job(args=[HOSTILE])], "limit": 100, "offset": 0})
    agent.answer(f"GET /v1/jobs/{JOB_ID}", job(args=[HOSTILE]))
    for args in (["job", "list"], ["job", "status", JOB_ID]):
        code, out = rnx(agent, *args)
        assert code == 0, out
        assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out, repr(out)


def test_without_controls_keeps_text_and_tabs() -> None:
    from rnx.views import without_controls

    assert without_controls(HOSTILE) == "a]52;c;ZXZpbA==b]0;ownedc[2Jd31mef\tg"
    assert without_controls("naïve ünïcode ✓ 日本") == "naïve ünïcode ✓ 日本"


def on_a_terminal(agent: FakeAgent, *args: str) -> str:
    """What `rnx ARGS` writes to a terminal (a pseudo-terminal here)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "dumb"}
    with subprocess.Popen(
        [sys.executable, "-m", "rnx", "--socket", agent.socket, *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env=env,
    ) as proc:
        os.close(follower)
        out = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready, "rnx wrote nothing for 30 s"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            out += chunk
        proc.wait(timeout=30)
    os.close(leader)
    return out.decode("utf-8", "replace")


def test_job_output_on_a_terminal_loses_its_control_characters(agent: FakeAgent) -> None:
    agent.answer(f"GET /v1/jobs/{JOB_ID}/logs", log_stream(["before", HOSTILE, "after"]))
    shown = on_a_terminal(agent, "job", "log", JOB_ID)
    assert "\x1b" not in shown and "\x9b" not in shown and "\x07" not in shown, repr(shown)
    assert "\x08" not in shown
    assert "a]52;c;ZXZpbA==b]0;ownedc[2Jd31mef\tg" in shown
    assert shown.replace("\r\n", "\n").startswith("before\n")


def test_raw_job_output_keeps_its_bytes_on_a_terminal(agent: FakeAgent) -> None:
    agent.answer(f"GET /v1/jobs/{JOB_ID}/logs", log_stream([HOSTILE]))
    assert HOSTILE in on_a_terminal(agent, "job", "log", "--raw", JOB_ID)


def test_job_output_into_a_pipe_keeps_its_bytes(agent: FakeAgent) -> None:
    agent.answer(f"GET /v1/jobs/{JOB_ID}/logs", log_stream([HOSTILE]))
    code, out = rnx(agent, "job", "log", JOB_ID)
    assert (code, out) == (0, HOSTILE + "\n")


def test_attached_run_strips_on_a_terminal_unless_raw(agent: FakeAgent) -> None:
    agent.answer("POST /v1/jobs", job(state="SCHEDULED", exit_code=None), 201)
    agent.answer(f"GET /v1/jobs/{JOB_ID}/logs", log_stream([HOSTILE]))
    assert "\x1b" not in on_a_terminal(agent, "job", "run", "--", "cat", "evil")
    assert HOSTILE in on_a_terminal(agent, "job", "run", "--raw", "--", "cat", "evil")


def test_runtime_info_and_network_show_lose_control_characters(agent: FakeAgent) -> None:
    # A registry writes a runtime.yml's description and environment; a developer a hostname.
    agent.answer(
        "GET /v1/runtimes/python-3.11",
        runtime(description=HOSTILE, environment={"GREETING": HOSTILE}),
    )
    code, out = rnx(agent, "runtime", "info", "python-3.11")
    assert code == 0, out
    shown = "a]52;c;ZXZpbA==b]0;ownedc[2Jd31mef\tg"
    assert f"Description:    {shown}" in out and f"GREETING={shown}" in out
    assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out
    attached = network()["jobs"][0]
    agent.answer("GET /v1/networks/backend", network(jobs=[{**attached, "hostname": HOSTILE}]))
    code, out = rnx(agent, "network", "show", "backend")
    assert code == 0, out
    assert shown in out and "\x1b" not in out and "\x9b" not in out
