"""A job's output in the journal (security-audit M6). A developer's job cannot page every
logged-in terminal with `<0>`, cannot log under the agent's name, and cannot flood the journal
past its rate limit (journald drops the rest and says how many); and the audit trail lives in a
journal of its own, so nothing a job writes rotates it out.

This module's agent runs with a small rate limit (LOG_LINES per LOG_INTERVAL), so a flood can
pass it in a moment; tests/security/test_exhaustion.py shows the default letting 100,000 lines
through whole."""

from __future__ import annotations

import json
import os
import select
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx.client import Client
from tests.integration.configured_agent import configured_agent
from tests.integration.conftest import sh
from tests.security.attacks.conftest import another_user_runs_a_job

pytestmark = pytest.mark.integration

LOG_LINES = 1000  # jobs.log_lines of this module's agent
LOG_INTERVAL = 3  # jobs.log_interval, seconds
FLOOD = 30_000
# journald's "Suppressed N messages from UNIT" (sd-messages.h SD_MESSAGE_JOURNAL_DROPPED).
JOURNAL_DROPPED = "a596d6fe7bfa4994828e72309e95d61e"
AUDIT_NAMESPACE = "joblet-audit"

# A logged-in terminal as journald's wall finds it: an entry in utmp (the sandbox's own /run).
UTMP = Path("/run/utmp")
UTMP_ENTRY = "@hi32s4s32s256shhiii4i20s"  # glibc's struct utmp on 64-bit Linux: 384 bytes
USER_PROCESS = 7


@pytest.fixture(scope="module", autouse=True)
def small_log_limit() -> Iterator[None]:
    with configured_agent(f"jobs:\n  log_lines: {LOG_LINES}\n  log_interval: {LOG_INTERVAL}s\n"):
        yield


@pytest.fixture
def terminal() -> Iterator[int]:
    """The master end of a pty that utmp says someone is logged in on: what journald's wall
    writes emergency messages to (ForwardToWall=yes, MaxLevelWall=emerg: its defaults)."""
    master, slave = os.openpty()
    line = os.ttyname(slave).removeprefix("/dev/").encode()
    now = int(time.time())
    entry = struct.pack(
        UTMP_ENTRY, USER_PROCESS, os.getpid(), line, b"jt", b"tester", b"", 0, 0, 0,
        now, 0, 0, 0, 0, 0, b"",
    )  # fmt: skip
    saved = UTMP.read_bytes() if UTMP.exists() else None
    with UTMP.open("ab") as out:
        out.write(entry)
    os.set_blocking(master, False)
    try:
        yield master
    finally:
        if saved is None:
            UTMP.unlink()
        else:
            UTMP.write_bytes(saved)
        os.close(master)
        os.close(slave)


def read_terminal(master: int) -> str:
    """What was written to the terminal so far."""
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except BlockingIOError:
            return data.decode(errors="replace")
        if not chunk:
            return data.decode(errors="replace")
        data += chunk


def wait_for_terminal(master: int, text: str, within: float = 10) -> str:
    seen = ""
    deadline = time.monotonic() + within
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{text!r} never reached the terminal; it got {seen!r}"
        select.select([master], [], [], left)
        seen += read_terminal(master)
    return seen


def journal(*matches: str, fields: str, namespace: str | None = None) -> list[dict[str, str]]:
    out = sh(
        "journalctl",
        "--no-pager",
        "-o",
        "json",
        *([f"--namespace={namespace}"] if namespace else []),
        *matches,
        f"--output-fields={fields}",
        check=False,
    )
    return [json.loads(line) for line in out.splitlines()]


def test_a_jobs_emergency_line_pages_no_terminal(developer: Client, terminal: int) -> None:
    # The control: an emergency logged on the host itself reaches the terminal.
    sh("logger", "-p", "emerg", "-t", "jt-control", "jt control: a real emergency")
    wait_for_terminal(terminal, "jt control: a real emergency")
    job = developer.run(["sh", "-c", "echo '<0>Joblet: host going down'; echo '<1>alert'"])
    assert developer.wait(job.id).state == "COMPLETED"
    lines = list(developer.logs(job.id, follow=False))
    # journald pages terminals before it stores a line: these are stored, so any page came.
    paged = read_terminal(terminal)
    assert "host going down" not in paged, f"a job's line paged every terminal: {paged!r}"
    assert lines == ["<0>Joblet: host going down", "<1>alert"], lines  # kept as it printed them
    entries = journal(f"_SYSTEMD_UNIT={job.unit}", fields="PRIORITY,MESSAGE")
    assert {e["PRIORITY"] for e in entries} == {"6"}, entries  # info, as any stdout line


def test_a_job_cannot_log_as_the_agent(developer: Client, tmp_path: Path) -> None:
    program = tmp_path / "joblet-agent"
    program.write_text("#!/bin/sh\necho 'a line that claims to be the agent'\n")
    program.chmod(0o755)
    job = developer.run(["/work/joblet-agent"], uploads=[str(program)])
    assert developer.wait(job.id).state == "COMPLETED"
    assert list(developer.logs(job.id, follow=False)) == ["a line that claims to be the agent"]
    posing = journal(
        "SYSLOG_IDENTIFIER=joblet-agent", f"_SYSTEMD_UNIT={job.unit}", fields="MESSAGE"
    )
    assert posing == [], f"the job's lines are the agent's by their identifier: {posing}"
    own = journal(f"_SYSTEMD_UNIT={job.unit}", fields="SYSLOG_IDENTIFIER")
    assert {e["SYSLOG_IDENTIFIER"] for e in own} == {f"job-{job.id[:8]}"}, own


FLOODER = f"""
import sys, time
for n in range({FLOOD}):
    print("flood", n)
sys.stdout.flush()
time.sleep({LOG_INTERVAL} + 0.5)
print("after the window", flush=True)
"""


def test_a_flood_past_the_rate_limit_is_cut_and_journald_says_how_much(developer: Client) -> None:
    job = developer.run(["python3", "-c", FLOODER])
    assert developer.wait(job.id).state == "COMPLETED"
    lines = list(developer.logs(job.id, follow=False))
    assert lines[-1] == "after the window", lines[-3:]  # the next window takes lines again
    kept = len(lines) - 1
    assert LOG_LINES <= kept < FLOOD, f"{kept} of {FLOOD} lines kept under a limit of {LOG_LINES}"
    # journald scales the burst with its free space (1x to 6x): what it dropped is its own count.
    told = journal(
        f"MESSAGE_ID={JOURNAL_DROPPED}", f"OBJECT_SYSTEMD_UNIT={job.unit}", fields="N_DROPPED"
    )
    dropped = sum(int(entry["N_DROPPED"]) for entry in told)
    assert kept + dropped == FLOOD, (kept, dropped, told)
    another_user_runs_a_job()


def test_the_audit_trail_outlives_the_journal_jobs_write_to(developer: Client) -> None:
    job = developer.run(["true"])
    developer.wait(job.id)
    developer.delete(job.id)  # an audited request
    audited = ("AUDIT=1", f"JOB_ID={job.id}")
    assert journal(*audited, fields="AUDIT_ACTION"), "no audit entry of the delete"
    # What a flood does to the journal jobs write to, at once: rotated, and every old file gone.
    sh("journalctl", "--rotate", "--vacuum-size=1")
    assert journal(*audited, fields="AUDIT_ACTION") == []  # the control: it is gone from there
    kept = journal(*audited, fields="AUDIT_ACTION,AUDIT_CALLER", namespace=AUDIT_NAMESPACE)
    actions = [entry["AUDIT_ACTION"] for entry in kept]
    assert "DELETE /v1/jobs/{id}" in actions, kept
