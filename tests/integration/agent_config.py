"""Running the sandbox's agent with a joblet.yml of a test's own for a while (admission caps,
owners' quotas), and its own again afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rnx.client import Client
from tests.integration.conftest import sh

CONFIG = Path("/etc/joblet/joblet.yml")


@contextlib.contextmanager
def agent_config(text: str) -> Iterator[None]:
    """The agent restarted with `text` as its joblet.yml; on exit, restarted with the file it
    had (or none). Running jobs keep running across both restarts."""
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


def restart_agent() -> None:
    sh("systemctl", "reset-failed", "joblet.service", check=False)
    sh("systemctl", "restart", "joblet.service")
    with Client() as client:
        assert client.health().status == "ok"
