"""rnx's upload stream, read back by the agent's extractor: the two ends agree."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from joblet_agent.adapters.archive import extract
from joblet_agent.domain.archive import ExtractLimits
from rnx import uploads
from rnx.errors import RnxError


def test_stream_round_trips_through_the_extractor(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "pkg" / "sub" / "x.py").write_text("print(1)\n")
    (src / "pkg" / "run").write_bytes(b"#!/bin/sh\n")
    (src / "pkg" / "run").chmod(0o750)
    (src / "pkg" / "ln").symlink_to("sub/x.py")
    (src / "odd size.bin").write_bytes(os.urandom(513))
    plan = uploads.plan([str(src / "odd size.bin")], [str(src / "pkg")])
    assert plan.bytes == 513 + len("print(1)\n") + len(b"#!/bin/sh\n")
    seen: list[int] = []
    data = b"".join(uploads.stream(plan, seen.append))
    assert seen[-1] == plan.bytes
    dest = tmp_path / "dest"
    dest.mkdir()
    done = extract(
        io.BytesIO(data), dest, ExtractLimits(plan.bytes, len(plan.entries)), what="upload"
    )
    assert done.entries == len(plan.entries)
    assert (dest / "odd size.bin").read_bytes() == (src / "odd size.bin").read_bytes()
    assert (dest / "pkg" / "sub" / "x.py").read_text() == "print(1)\n"
    assert (dest / "pkg" / "run").stat().st_mode & 0o777 == 0o750
    assert os.readlink(dest / "pkg" / "ln") == "sub/x.py"


@pytest.mark.parametrize(
    ("files", "dirs", "match"),
    [
        (["missing"], [], "--upload: 'missing': No such file or directory"),
        (["d"], [], "is a directory; use --upload-dir"),
        ([], ["f"], "is not a directory; use --upload"),
        (["f", "d/f"], [], "would be /work/f, which --upload=f is already"),
        (["f"], ["d2/f"], "would be /work/f"),
    ],
)
def test_plan_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: list[str], dirs: list[str], match: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d2" / "f").mkdir(parents=True)
    (tmp_path / "f").write_text("top")
    (tmp_path / "d" / "f").write_text("nested")
    with pytest.raises(RnxError) as caught:
        uploads.plan(files, dirs)
    assert match in caught.value.message
    assert caught.value.code == "invalid"


def test_a_file_replaced_after_listing_fails_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("first")
    plan = uploads.plan([str(path)], [])
    path.unlink()
    path.write_text("other")
    with pytest.raises(RnxError, match="was replaced or changed while being sent"):
        b"".join(uploads.stream(plan))
