"""H1, the registry side: a runtime's index is the root of trust of its archive (the sha256 the
agent checks is the index's), so an index fetched over plain http:// is an admin's explicit
choice, recorded with the runtime; and a runtime may not put /etc/ld.so.preload (or anything
else under /etc but what its own programs read) into its jobs' root.

The registry here is served over plain http by the test, on the sandbox's loopback.
"""

from __future__ import annotations

import functools
import http.server
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.conftest import rnx
from tests.integration.test_control_plane import rnx as rnx_as
from tests.runtime_kit import pack, registry, tiny_python, unique
from tests.security.attacks.conftest import another_user_runs_a_job, restart_agent

RUNTIMES_DIR = Path("/opt/joblet/runtimes")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_registry(tmp_path: Path) -> Iterator[tuple[str, str, Path, str]]:
    """(runtime name, http:// URL of its index, the archive, its sha256), served in plain http."""
    name = unique("tinypy")
    archive = tmp_path / f"{name}.tar.gz"
    sha, size = pack(tiny_python(tmp_path / "tree", name), archive)
    registry(tmp_path / "registry.json", {name: (archive, sha, size)})
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield name, f"http://127.0.0.1:{server.server_address[1]}/registry.json", archive, sha
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        rnx("runtime", "remove", name)


def installed(name: str) -> bool:
    return name in [
        r["name"] for r in json.loads(rnx("--json", "runtime", "list").stdout)["runtimes"]
    ]


@pytest.mark.parametrize("role", ["developer", "maintainer"])
def test_an_install_over_plain_http_is_refused_to_everyone_but_an_admin(
    certs: dict[str, str], http_registry: tuple[str, str, Path, str], role: str
) -> None:
    name, url, archive, sha = http_registry
    data = archive.read_bytes()
    with Client(config=certs[role]) as client, pytest.raises(RnxError) as refused:
        client.install_runtime(
            name, [data], size=len(data), sha256=sha, registry=url, archive=url, insecure=True
        )
    assert refused.value.status == 403, refused.value.message
    assert not installed(name)
    # rnx itself: the flag is passed on, and the agent says no.
    result = rnx_as(certs[role], "runtime", "install", name, "--registry", url, "--insecure-http")
    assert result.returncode == 6, result.stderr
    assert not installed(name)
    another_user_runs_a_job()


def test_rnx_refuses_plain_http_and_an_admin_may_accept_it_on_the_record(
    http_registry: tuple[str, str, Path, str],
) -> None:
    name, url, _, sha = http_registry
    refused = rnx("runtime", "install", name, "--registry", url)
    assert refused.returncode == 2
    assert "is plain http://" in refused.stderr and "--insecure-http" in refused.stderr
    assert not installed(name)
    accepted = rnx("runtime", "install", name, "--registry", url, "--insecure-http")  # root: admin
    assert accepted.returncode == 0, accepted.stderr
    info = json.loads(rnx("--json", "runtime", "info", name).stdout)
    assert info["sha256"] == sha  # the index's
    assert info["source"]["registry"] == url
    assert info["source"]["archive"] == url.replace("registry.json", f"{name}.tar.gz")
    assert info["source"]["insecure"] is True
    assert info["source"]["installed_by"] == "unix:root"
    shown = rnx("runtime", "info", name).stdout
    assert f"Registry:       {url} (plain http://, --insecure-http)" in shown
    assert f"SHA256:         {sha}" in shown


def test_a_runtime_may_not_preload_a_library_into_its_jobs(tmp_path: Path) -> None:
    """/etc/ld.so.preload in a job's root makes every program there load the runtime's library;
    the runtime's tree must stay data for its jobs."""
    name = unique("preload")
    tree = tiny_python(tmp_path / "tree", name)
    (tree / "etc").mkdir()
    (tree / "etc" / "ld.so.preload").write_text("/opt/tinypy/tools/visible\n")
    spec = (tree / "runtime.yml").read_text()
    spec = spec.replace(
        "mounts:\n", "mounts:\n- source: etc/ld.so.preload\n  target: /etc/ld.so.preload\n", 1
    )
    (tree / "runtime.yml").write_text(spec)
    archive = tmp_path / f"{name}.tar.gz"
    sha, size = pack(tree, archive)
    index = registry(tmp_path / "registry.json", {name: (archive, sha, size)})
    result = rnx("runtime", "install", name, "--registry", str(index))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "mounts[0].target: '/etc/ld.so.preload' is not valid; under /etc a runtime" in (
        result.stderr
    )
    assert not installed(name)
    assert not (RUNTIMES_DIR / "tinypy" / name).exists()
    with tarfile.open(archive) as members:  # what was refused was the runtime.yml, not the tar
        assert "etc/ld.so.preload" in members.getnames()
    restart_agent()
    another_user_runs_a_job()
