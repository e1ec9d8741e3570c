"""Installing runtimes on disk: only a checked, valid archive is moved into place, in one step;
everything refused leaves nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from joblet_agent.adapters.runtime_store import STAGING, RuntimeDirectory
from joblet_agent.domain.runtime import RuntimeSpec
from joblet_agent.errors import ErrorCode, JobletError

Files = dict[str, bytes | str | None]  # path -> content; None: directory; str: symlink target


def archive(files: Files, modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as out:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mode = (modes or {}).get(name, 0o755 if content is None else 0o644)
            if content is None:
                info.type = tarfile.DIRTYPE
                out.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                out.addfile(info)
            else:
                info.size = len(content)
                out.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def runtime_yml(name: str = "tool-1", **fields: Any) -> bytes:
    spec = {
        "name": name,
        "version": "1",
        "mounts": [{"source": "bin", "target": "/opt/tool/bin", "selective": ["tool"]}],
        **fields,
    }
    return yaml.safe_dump(spec).encode()


def good(name: str = "tool-1", **fields: Any) -> Files:
    return {"runtime.yml": runtime_yml(name, **fields), "bin": None, "bin/tool": b"#!/bin/sh\n"}


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


def install(
    store: RuntimeDirectory,
    data: bytes,
    *,
    name: str = "tool-1",
    sha256: str | None = None,
    size: int | None = None,
    approve: Callable[[RuntimeSpec], None] = lambda spec: None,
) -> Any:
    return asyncio.run(
        store.install(
            name,
            _chunks(data),
            size=len(data) if size is None else size,
            sha256=sha256 or hashlib.sha256(data).hexdigest(),
            approve=approve,
        )
    )


@pytest.fixture
def store(tmp_path: Path) -> RuntimeDirectory:
    directory = RuntimeDirectory(tmp_path / "runtimes", arch="amd64")
    directory.prepare()
    return directory


def leftovers(store: RuntimeDirectory) -> list[str]:
    """What is in the runtimes directory, besides an empty staging directory."""
    found = sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*"))
    return [] if found == [STAGING] else found


def test_install_places_it_under_language_and_name(store: RuntimeDirectory) -> None:
    data = archive(good() | {".joblet-install.json": b'{"sha256": "forged"}'})
    runtime = install(store, data)
    assert runtime.directory == store.root / "tool" / "tool-1"
    assert runtime.sha256 == hashlib.sha256(data).hexdigest()  # the installer's, not the archive's
    assert (store.root / "tool" / "tool-1" / "bin" / "tool").read_bytes() == b"#!/bin/sh\n"
    assert [r.name for r in store.installed()] == ["tool-1"]
    assert store.find("tool-1") == runtime
    assert not list((store.root / STAGING).iterdir())


def test_a_runtime_replacing_usr_needs_no_shell(store: RuntimeDirectory) -> None:
    """Nothing privileged runs from a runtime's tree (review H1): it need not bring /bin/sh."""
    files: Files = {
        "runtime.yml": runtime_yml(mounts=[{"source": "usr", "target": "/usr"}]),
        "usr": None,
    }
    assert install(store, archive(files)).directory == store.root / "tool" / "tool-1"


def test_files_are_readable_by_every_job_and_writable_by_none(store: RuntimeDirectory) -> None:
    files = good() | {"bin/secret": b"x", "bin/shared": b"y", "bin/suid": b"z"}
    install(store, archive(files, {"bin/secret": 0o600, "bin/shared": 0o666, "bin/suid": 0o4755}))
    top = store.root / "tool" / "tool-1" / "bin"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in top.iterdir()}
    assert modes == {"tool": 0o644, "secret": 0o644, "shared": 0o644, "suid": 0o755}
    assert stat.S_IMODE(top.stat().st_mode) == 0o755


def test_reinstall_swaps_the_whole_tree(store: RuntimeDirectory) -> None:
    install(store, archive(good() | {"old-only": b"1"}))
    install(store, archive(good(release="2.0.0") | {"new-only": b"2"}))
    top = store.root / "tool" / "tool-1"
    assert (top / "new-only").exists() and not (top / "old-only").exists()
    assert store.find("tool-1") is not None
    assert store.find("tool-1").spec.release == "2.0.0"  # type: ignore[union-attr]
    assert not list((store.root / STAGING).iterdir())


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"sha256": "0" * 64}, ErrorCode.INVALID, "does not match the expected " + "0" * 64),
        ({"size": 10}, ErrorCode.INVALID, "longer than the announced 10 bytes"),
        ({"size": 10**9}, ErrorCode.INVALID, "bytes received, 1000000000 announced"),
        ({"size": 9 * 1024**3}, ErrorCode.TOO_LARGE, "runtime archives are at most"),
        ({"name": "other"}, ErrorCode.INVALID, "its runtime.yml names 'tool-1'"),
    ],
)
def test_a_stream_not_as_announced_is_refused(
    store: RuntimeDirectory, change: dict[str, Any], code: ErrorCode, message: str
) -> None:
    with pytest.raises(JobletError) as refused:
        install(store, archive(good()), **change)
    assert refused.value.code is code
    assert message in refused.value.message
    assert leftovers(store) == []


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"bin/tool": b"x"}, "no runtime.yml at its top"),
        ({"runtime.yml": b"name: [x"}, "tool-1: runtime.yml: not valid YAML"),
        ({"runtime.yml": runtime_yml(architectures=["arm64"])}, "built for arm64; this host"),
        (good() | {"bin/tool": "../../../../etc/passwd"}, "the link points outside"),
        (good() | {"bin/abs": "/etc/passwd"}, "the link points outside: '/etc/passwd'"),
        ({"runtime.yml": runtime_yml(), "bin": None}, "selective: 'tool' is not in 'bin'"),
        (
            {"runtime.yml": runtime_yml(), "bin": ".", "bin/tool": b"x"},
            "'bin' above it is not a directory",
        ),
        (
            {
                "runtime.yml": runtime_yml(mounts=[{"source": "up/x", "target": "/opt/x"}]),
                "up": ".",
            },
            "up/x' is not in the runtime",
        ),
    ],
)
def test_an_unusable_runtime_is_refused_and_leaves_nothing(
    store: RuntimeDirectory, files: Files, message: str
) -> None:
    with pytest.raises(JobletError) as refused:
        install(store, archive(files))
    assert message in refused.value.message, refused.value.message
    assert leftovers(store) == []


def test_approval_sees_the_spec_and_can_refuse(store: RuntimeDirectory) -> None:
    seen: list[RuntimeSpec] = []

    def refuse(spec: RuntimeSpec) -> None:
        seen.append(spec)
        raise JobletError(ErrorCode.FORBIDDEN, "no")

    with pytest.raises(JobletError, match="no"):
        install(store, archive(good(relax=["wx-memory"])), approve=refuse)
    assert seen[0].relax == ("wx-memory",)
    assert leftovers(store) == []


def test_a_name_is_unique_across_languages(store: RuntimeDirectory) -> None:
    install(store, archive(good()))
    with pytest.raises(JobletError) as refused:
        install(store, archive(good(language="other")))
    assert refused.value.code is ErrorCode.CONFLICT
    assert "installed as a tool runtime" in refused.value.message


def test_remove_and_broken_trees_are_not_listed(store: RuntimeDirectory) -> None:
    runtime = install(store, archive(good()))
    store.remove(runtime)
    assert store.installed() == []
    assert leftovers(store) == []
    # Put there by hand, broken: ignored (and logged), never resolved.
    broken = store.root / "tool" / "tool-1"
    (broken / "bin").mkdir(parents=True)
    (broken / "runtime.yml").write_bytes(runtime_yml())  # its selective entry is missing
    misplaced = store.root / "java" / "tool-2"
    misplaced.mkdir(parents=True)
    (misplaced / "runtime.yml").write_bytes(runtime_yml("tool-2", mounts=[]))
    assert store.installed() == []
    (broken / "bin" / "tool").write_text("fixed")
    os.utime(broken / "runtime.yml", ns=(1, 1))  # the cache is keyed by runtime.yml's stat
    assert [r.name for r in store.installed()] == ["tool-1"]


def test_prepare_clears_installs_cut_short(tmp_path: Path) -> None:
    store = RuntimeDirectory(tmp_path / "runtimes", arch="amd64")
    (store.root / STAGING / "tool-1-abc" / "half").mkdir(parents=True)
    store.prepare()
    assert leftovers(store) == []
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o755
