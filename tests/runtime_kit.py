"""Small runtimes made from files in a test, packed and listed in a local registry like the
ones runtimes/build.py writes (integration tests install them in seconds)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import Any

import yaml

HOST_PYTHON = Path("/usr/bin/python3").resolve()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tiny_python(tree: Path, name: str, **extra: Any) -> Path:
    """A runtime holding its own copy of the host's python3 at /opt/tinypy/bin, and a tools
    directory of which only two entries are bound (selective)."""
    (tree / "bin").mkdir(parents=True)
    shutil.copy2(HOST_PYTHON, tree / "bin" / "python3")
    tools = tree / "tools"
    tools.mkdir()
    for entry in ("visible", "also-visible", "hidden"):
        (tools / entry).write_text(f"{entry}\n")
    spec: dict[str, Any] = {
        "name": name,
        "language": "tinypy",
        "version": "3",
        "release": "1.0.0",
        "description": "test runtime",
        "mounts": [
            {"source": "bin", "target": "/opt/tinypy/bin"},
            {
                "source": "tools",
                "target": "/opt/tinypy/tools",
                "selective": ["visible", "also-visible"],
            },
        ],
        "environment": {"PATH_PREPEND": "/opt/tinypy/bin", "TINY_RUNTIME": "yes"},
        "requirements": {"min_memory": "256M", "recommended_memory": "1G"},
        "smoke_test": ["python3", "-c", "print('tiny smoke ok')"],
        **extra,
    }
    (tree / "runtime.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tree


def pack(tree: Path, archive: Path) -> tuple[str, int]:
    """tar.gz of the tree's contents at the archive's top; (sha256, size)."""
    with tarfile.open(archive, "w:gz") as out:
        for path in sorted(tree.rglob("*")):
            out.add(path, arcname=str(path.relative_to(tree)), recursive=False)
    data = archive.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def evil_archive(archive: Path, name: str, member: tarfile.TarInfo) -> tuple[str, int]:
    """A runtime archive with a valid runtime.yml, then `member`."""
    spec = yaml.safe_dump({"name": name, "version": "1"}).encode()
    with tarfile.open(archive, "w:gz") as out:
        info = tarfile.TarInfo("runtime.yml")
        info.size = len(spec)
        out.addfile(info, io.BytesIO(spec))
        out.addfile(member, io.BytesIO(b"x" * member.size) if member.isreg() else None)
    data = archive.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def registry(path: Path, entries: dict[str, tuple[Path, str, int]]) -> Path:
    """registry.json next to the archives: name -> 1.0.0 -> (archive, sha256, size)."""
    index = {
        "format": 1,
        "runtimes": {
            name: {
                "1.0.0": {
                    "url": archive.name,
                    "sha256": sha,
                    "size": size,
                    "platforms": ["linux/amd64", "linux/arm64"],
                }
            }
            for name, (archive, sha, size) in entries.items()
        },
    }
    path.write_text(json.dumps(index))
    return path


def runtime_archive(tmp: Path, name: str) -> tuple[bytes, str, int]:
    """A runtime of one file, whose smoke test is the host's `true`."""
    tree = tmp / unique("tree")
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "hello").write_text("hello\n")
    (tree / "runtime.yml").write_text(
        f"name: {name}\nversion: '1'\nmounts: [{{source: bin, target: /opt/{name}/bin}}]\n"
        "smoke_test: ['true']\n"
    )
    archive = tmp / f"{name}.tar.gz"
    sha, size = pack(tree, archive)
    return archive.read_bytes(), sha, size
