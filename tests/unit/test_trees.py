"""Walking and removing trees that came from outside: iterative, at any depth, links never
followed (review H2: a tree 1,200 deep made every agent start die with RecursionError)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from joblet_agent.adapters.trees import discard_tree, remove_tree, walk_tree

DEEPER_THAN_THE_STACK = 3000  # > sys.getrecursionlimit(); and 6,000 bytes of path > PATH_MAX


def _deep(top: Path, depth: int) -> None:
    """`depth` nested directories, made by names relative to a descriptor (no long paths)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(depth):
            os.mkdir("d", dir_fd=fd)
            if level % 500 == 0:
                os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
                os.symlink("/", "root-link", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def test_a_tree_deeper_than_the_stack_and_path_max_is_removed(tmp_path: Path) -> None:
    assert sys.getrecursionlimit() < DEEPER_THAN_THE_STACK
    top = tmp_path / "upload"
    top.mkdir()
    _deep(top, DEEPER_THAN_THE_STACK)
    remove_tree(top)
    assert not top.exists()


def test_links_are_removed_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    top = tmp_path / "tree"
    (top / "a").mkdir(parents=True)
    (top / "a" / "out").symlink_to(outside)
    (top / "a" / "file").write_text("y")
    (top / "empty").mkdir()
    remove_tree(top)
    assert not top.exists()
    assert (outside / "keep").read_text() == "x"


def test_removing_what_is_not_there_or_not_a_directory(tmp_path: Path) -> None:
    remove_tree(tmp_path / "missing")
    (tmp_path / "file").write_text("z")
    remove_tree(tmp_path / "file")
    (tmp_path / "link").symlink_to(tmp_path)
    remove_tree(tmp_path / "link")  # the link goes, never what it names
    assert list(tmp_path.iterdir()) == []


def test_walk_lists_everything_once_parents_first_and_never_follows_links(
    tmp_path: Path,
) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("1")
    (tmp_path / "a" / "up").symlink_to("..")
    (tmp_path / "g").write_text("2")
    seen = [p.relative_to(tmp_path).as_posix() for p in walk_tree(tmp_path)]
    assert sorted(seen) == ["a", "a/b", "a/b/f", "a/up", "g"]
    assert seen.index("a") < seen.index("a/b") < seen.index("a/b/f")


def test_discard_logs_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(path: str | int, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    (tmp_path / "t" / "x").mkdir(parents=True)
    monkeypatch.setattr(os, "rmdir", fail)
    with caplog.at_level(logging.WARNING):
        assert discard_tree(tmp_path / "t", "the leftover upload") is False
    assert "could not remove the leftover upload" in caplog.text
    monkeypatch.undo()
    assert discard_tree(tmp_path / "t", "the leftover upload") is True
    assert discard_tree(tmp_path / "t", "the leftover upload") is True
