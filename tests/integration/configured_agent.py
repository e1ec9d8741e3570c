"""The agent restarted with a joblet.yml of a test's own, for tests of what the file sets (caps,
defaults, retention) at values a test can reach in seconds. Use it module-wide: each use costs two
agent restarts (about a second each)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import sh

CONFIG = Path("/etc/joblet/joblet.yml")


def restart_agent() -> None:
    """systemctl restart joblet.service; returns once the agent is active again (a failed start
    fails the test, with the agent's last lines)."""
    sh("systemctl", "reset-failed", "joblet.service", check=False)
    sh("systemctl", "restart", "joblet.service", check=False)
    deadline = time.monotonic() + 30
    while True:
        state = sh("systemctl", "is-active", "joblet.service", check=False).strip()
        if state == "active":
            return
        if state == "failed" or time.monotonic() > deadline:
            log = sh("journalctl", "-u", "joblet.service", "-n", "30", "--no-pager", check=False)
            pytest.fail(f"the agent did not start ({state}):\n{log}")
        time.sleep(0.1)


@contextlib.contextmanager
def configured_agent(text: str) -> Iterator[None]:
    """The agent runs with `text` as /etc/joblet/joblet.yml until the block ends; then the file
    it had (or none) is put back and the agent restarted with it."""
    saved = CONFIG.read_text() if CONFIG.exists() else None
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(text)
    try:
        restart_agent()
        yield
    finally:
        if saved is None:
            CONFIG.unlink()
        else:
            CONFIG.write_text(saved)
        restart_agent()
