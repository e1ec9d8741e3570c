"""Running the probe programs of probes/ as jobs and reading their one-line JSON verdicts."""

from __future__ import annotations

import ast
import contextlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from rnx.client import Client, Job
from rnx.errors import RnxError
from tests.integration.conftest import sh, wait_state

PROBES_DIR = Path(__file__).parent / "probes"
ENDED = ("COMPLETED", "FAILED", "STOPPED", "TIMEOUT")


def compact(source: str) -> str:
    """The program without comments and docstrings: an argument of a job is at most 32 KiB."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def probe_source(program: str) -> str:
    return compact((PROBES_DIR / f"{program}.py").read_text())


def start_probe(client: Client, program: str, *args: str, **limits: Any) -> Job:
    """The program text goes in with `python3 -c`, so the job needs no file of ours."""
    return client.run(["python3", "-c", probe_source(program), *args], **limits)


def verdict(lines: list[str]) -> dict[str, Any] | None:
    """The last output line that is a probe's JSON verdict."""
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and "probe" in data:
                return data
    return None


def missing_verdict(client: Client, job_id: str, lines: list[str]) -> str:
    job = client.get(job_id)
    return (
        f"job {job_id} printed no verdict: it is {job.state} "
        f"(result {job.result}, reason {job.reason}); last output: {lines[-10:]}"
    )


def run_probe(client: Client, program: str, *args: str, **limits: Any) -> dict[str, Any]:
    """Runs one probe job to its end; a job that printed no verdict fails the test: a probe that
    could not even start (no python3, say) proves nothing."""
    job = start_probe(client, program, *args, **limits)
    wait_state(client, job.id, *ENDED, timeout=60)
    lines = list(client.logs(job.id, follow=True))  # follow: until the journal has it all
    report = verdict(lines)
    if report is None:
        pytest.fail(missing_verdict(client, job.id, lines), pytrace=False)
    return report


def await_verdict(client: Client, job_id: str, *, timeout: float = 60) -> dict[str, Any]:
    """The verdict of a probe that holds on after printing it (probes/exhaust.py)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = list(client.logs(job_id, follow=False))
        report = verdict(lines)
        if report is not None:
            return report
        if client.get(job_id).state in ENDED or time.monotonic() > deadline:
            pytest.fail(missing_verdict(client, job_id, lines), pytrace=False)
        time.sleep(0.2)


def outside_a_job(action: str, *args: str, cpus: str | None = None) -> dict[str, Any]:
    """attempt.py as nobody with no capability and no seccomp filter, outside any job (what an
    unhardened unprivileged job would be), optionally pinned to `cpus`."""
    pinned = ["taskset", "-c", cpus] if cpus else []
    argv = [
        *pinned, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all",
        "/usr/bin/python3", "-c", probe_source("attempt"), action, *args,
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    report = verdict(result.stdout.splitlines())
    assert report is not None, (result.returncode, result.stdout, result.stderr)
    return report


RESPONSIVE_SEC = 15.0


def assert_host_responsive(client: Client) -> None:
    """systemd answers and is not failing, the agent is healthy, and a fresh job runs within
    RESPONSIVE_SEC: a liveness bound (2 cores, a flood or bomb next door), not a speed target."""
    state = sh("systemctl", "is-system-running", check=False).strip()
    assert state in ("running", "degraded"), f"systemctl is-system-running: {state!r}"
    assert client.health().status == "ok"
    started = time.monotonic()
    job = client.run(["echo", "still-answering"])
    final = wait_state(client, job.id, *ENDED, timeout=RESPONSIVE_SEC)
    took = time.monotonic() - started
    assert final.state == "COMPLETED", final
    assert list(client.logs(job.id, follow=True)) == ["still-answering"]
    assert took < RESPONSIVE_SEC, f"an echo job took {took:.1f}s"


def stop_and_wait(client: Client, job_id: str) -> Job:
    if client.get(job_id).state not in ENDED:
        with contextlib.suppress(RnxError):  # it may end on its own meanwhile
            client.stop(job_id)
    return wait_state(client, job_id, *ENDED, "CANCELED", timeout=30)
