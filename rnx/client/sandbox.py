"""A job to work in, step by step, as an AI agent or a student does: `Client.sandbox()` starts
one whose command waits, and its execs, files and lifetime are methods of it, the job's id
given. The calls are the Client's own (their docstrings say what each does)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rnx.client.exec import ExecResult
from rnx.client.job import Job, JobState
from rnx.client.job_file import Copied, FileListing
from rnx.errors import RnxError

START_WAIT_SEC = 120.0  # a bound on a job that never leaves SCHEDULED, not a speed target


class _Calls(Protocol):
    """What a sandbox needs of rnx.Client (which it cannot import: it stands below it)."""

    def get(self, job_id: str) -> Job: ...
    def exec(self, *args: Any, **kwargs: Any) -> ExecResult: ...
    def read_file(self, job_id: str, path: str) -> bytes: ...
    def write_file(self, *args: Any, **kwargs: Any) -> Copied: ...
    def list_files(self, job_id: str, path: str = "/work") -> FileListing: ...
    def copy_in(self, *args: Any, **kwargs: Any) -> Copied: ...
    def download(self, *args: Any, **kwargs: Any) -> Path: ...
    def extend(self, job_id: str, timeout: float | str) -> Job: ...


class Sandbox:
    """`with client.sandbox(runtime="python-3.11", idle_timeout_sec=900) as sb:` a running job;
    sb.exec(["python3", "-c", "print(1)"]).text, sb.write_file("/work/x.py", "..."),
    sb.read_file("/work/out.csv"), sb.list_files(), sb.copy_in("./src", "/work/"),
    sb.download("/work/out", "."), sb.extend("30m"); stopped and deleted as the block ends."""

    def __init__(self, client: _Calls, job: Job) -> None:
        self._client = client
        self.job = job
        self.id = job.id

    def exec(self, command: list[str] | tuple[str, ...], **options: Any) -> ExecResult:
        """Client.exec in this job: env, workdir, timeout, input."""
        return self._client.exec(self.id, command, **options)

    def read_file(self, path: str) -> bytes:
        return self._client.read_file(self.id, path)

    def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> Copied:
        return self._client.write_file(self.id, path, data, mode=mode)

    def list_files(self, path: str = "/work") -> FileListing:
        return self._client.list_files(self.id, path)

    def copy_in(
        self, source: str, dest: str, progress: Callable[[int, int], None] | None = None
    ) -> Copied:
        return self._client.copy_in(self.id, source, dest, progress)

    def download(
        self, path: str, dest: str = ".", progress: Callable[[int, int], None] | None = None
    ) -> Path:
        return self._client.download(self.id, path, dest, progress)

    def extend(self, timeout: float | str) -> Job:
        return self._client.extend(self.id, timeout)

    def refresh(self) -> Job:
        """The job's record now (its state, its end once it ended)."""
        self.job = self._client.get(self.id)
        return self.job


def running(client: _Calls, job: Job) -> Job:
    """The job once it runs; an error naming its state if it ended first."""
    deadline = time.monotonic() + START_WAIT_SEC
    pause = 0.005
    while job.state is JobState.SCHEDULED:
        if time.monotonic() > deadline:
            raise RnxError(
                "timeout", f"job {job.id} did not start within {START_WAIT_SEC:g} s", None
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
        job = client.get(job.id)
    if job.state.ended:
        raise RnxError(
            "conflict",
            f"the sandbox's job {job.id} ended before it could be used: {job.state}"
            + (f" ({job.reason})" if job.reason else ""),
            f"rnx job log {job.id[:8]}",
        )
    return job
