"""Fixtures shared by unit tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from joblet_agent.pki.store import Pki


@pytest.fixture
def ca(tmp_path: Path) -> Pki:
    """A fresh PKI (CA, server certificate, empty CRL) in a temporary directory."""
    authority = Pki(tmp_path / "pki")
    authority.init()
    return authority


@pytest.fixture(autouse=True)
def nothing_left_running(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fails a test that leaves asyncio tasks pending when its event loop ends (asyncio.run
    would cancel them quietly) or child processes of its own behind."""
    left: list[str] = []
    cancel_all = asyncio.runners._cancel_all_tasks  # type: ignore[attr-defined]

    def noting(loop: asyncio.AbstractEventLoop) -> None:
        left.extend(repr(t.get_coro()) for t in asyncio.all_tasks(loop) if not t.done())
        cancel_all(loop)

    monkeypatch.setattr(asyncio.runners, "_cancel_all_tasks", noting)
    before = _children()
    yield
    assert not left, f"the test left asyncio tasks pending: {left}"
    children = _children() - before
    assert not children, f"the test left child processes running: {sorted(children)}"


def _children() -> set[str]:
    """This process's live children, as 'pid command' (zombies are reaped by whoever forked)."""
    me = str(os.getpid())
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.add(f"{stat.parent.name} {stat.parent.joinpath('comm').read_text().strip()}")
    return found
