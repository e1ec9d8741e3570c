"""rnx's side of installs: reading a registry index, choosing an archive, checking what it got."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rnx.client import Runtime, RuntimeList
from rnx.errors import RnxError
from rnx.registry import Archive, _NoDowngrade, choose, fetched, index_location, load_index

SHA = "a" * 64


def index(**runtimes: Any) -> dict[str, Any]:
    return {"format": 1, "runtimes": runtimes}


def entry(url: str = "x.tar.gz", **fields: Any) -> dict[str, Any]:
    return {"url": url, "sha256": SHA, "size": 10, "platforms": ["linux/amd64"], **fields}


def test_the_highest_version_unless_one_is_asked_for() -> None:
    data = index(tool={"1.9.2": entry(), "1.10.0": entry("new.tar.gz"), "1.2": entry()})
    chosen = choose(data, "/srv/reg/registry.json", "tool", None, "linux/amd64")
    assert (chosen.version, chosen.url) == ("1.10.0", "/srv/reg/new.tar.gz")
    assert choose(data, "/srv/reg/registry.json", "tool", "1.2", "linux/amd64").version == "1.2"


def test_archive_urls_relative_to_a_remote_index() -> None:
    data = index(tool={"1": entry("archives/t.tar.gz")})
    chosen = choose(data, "https://r.example/runtimes/registry.json", "tool", None, "linux/amd64")
    assert chosen.url == "https://r.example/runtimes/archives/t.tar.gz"
    data = index(tool={"1": entry("file:///srv/t.tar.gz")})
    assert choose(data, "/x/registry.json", "tool", None, "linux/amd64").url == "/srv/t.tar.gz"


@pytest.mark.parametrize(
    ("data", "name", "version", "code", "message"),
    [
        (
            index(other={"1": entry()}),
            "tool",
            None,
            "not-found",
            "tool is not in the registry; it has: other",
        ),
        (
            index(tool={"1": entry()}),
            "tool",
            "2",
            "not-found",
            "tool@2 is not in the registry; versions: 1",
        ),
        (
            index(tool={"1": entry(platforms=["linux/arm64"])}),
            "tool",
            None,
            "unsupported",
            "built for linux/arm64; the agent is linux/amd64",
        ),
        (index(tool={"1": {"url": "x"}}), "tool", None, "invalid", "needs url, sha256 and size"),
        (
            index(tool={"1": entry(sha256="abc")}),
            "tool",
            None,
            "invalid",
            "sha256 must be 64 hex digits",
        ),
        (index(tool={"1": entry(size=-1)}), "tool", None, "invalid", "size a count"),
    ],
)
def test_refusals(
    data: dict[str, Any], name: str, version: str | None, code: str, message: str
) -> None:
    with pytest.raises(RnxError) as refused:
        choose(data, "/r/registry.json", name, version, "linux/amd64")
    assert refused.value.code == code
    assert message in refused.value.message


def test_index_locations(tmp_path: Path) -> None:
    (tmp_path / "registry.json").write_text(json.dumps(index()))
    assert index_location(str(tmp_path)) == str(tmp_path / "registry.json")
    assert index_location(f"file://{tmp_path}/registry.json") == str(tmp_path / "registry.json")
    assert index_location("https://r.example/i.json") == "https://r.example/i.json"
    with pytest.raises(RnxError, match="an https:// URL, a file:// URL or a path"):
        index_location("ftp://r.example/i.json")
    with pytest.raises(RnxError, match="no registry index there"):
        index_location(str(tmp_path / "missing"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(RnxError, match="not JSON"):
        load_index(str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(RnxError, match="no 'runtimes' mapping"):
        load_index(str(tmp_path / "list.json"))


def _archive(path: Path, data: bytes, **changes: Any) -> Archive:
    fields: dict[str, Any] = {
        "name": "tool",
        "version": "1",
        "url": str(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "platforms": (),
    }
    return Archive(**(fields | changes))


def test_a_local_archive_is_checked_then_handed_over(tmp_path: Path) -> None:
    path = tmp_path / "t.tar.gz"
    path.write_bytes(b"0123456789")
    progress: list[int] = []
    with fetched(_archive(path, b"0123456789"), progress.append) as stream:
        assert stream.read() == b"0123456789"
    assert progress == [10]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sha256": "b" * 64}, "does not match the registry's " + "b" * 64 + ": tampered"),
        ({"size": 5}, "larger than the 5 bytes listed"),
        ({"size": 50}, "10 bytes, the registry lists 50"),
    ],
)
def test_a_tampered_or_truncated_archive_is_refused(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    path = tmp_path / "t.tar.gz"
    path.write_bytes(b"0123456789")
    with (
        pytest.raises(RnxError) as refused,
        fetched(_archive(path, b"0123456789", **changes), print),
    ):
        pass
    assert refused.value.code == "invalid"
    assert message in refused.value.message


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """tmp_path over HTTP on the loopback: a remote registry, as rnx meets an https:// one."""
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _remote_registry(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "archives").mkdir()
    (tmp_path / "archives" / "t.tar.gz").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    listed = entry("archives/t.tar.gz", sha256=digest, size=len(data))
    (tmp_path / "registry.json").write_text(json.dumps(index(tool={"1.0.0": listed})))


def test_a_remote_registry_and_archive(tmp_path: Path, served: str) -> None:
    # The loopback server speaks plain http:// (hence insecure=True); an https:// registry
    # takes the same path with TLS.
    data = b"an archive" * 1000
    _remote_registry(tmp_path, data)
    location = index_location(f"{served}/registry.json", insecure=True)
    chosen = choose(
        load_index(location, insecure=True), location, "tool", None, "linux/amd64", insecure=True
    )
    assert chosen.url == f"{served}/archives/t.tar.gz"
    progress: list[int] = []
    with fetched(chosen, progress.append, insecure=True) as stream:
        assert stream.read() == data
    assert progress[-1] == len(data)
    (tmp_path / "archives" / "t.tar.gz").write_bytes(data[:-1] + b"!")  # tampered on the server
    with (
        pytest.raises(RnxError, match="tampered with or damaged"),
        fetched(chosen, print, insecure=True),
    ):
        pass
    with pytest.raises(RnxError, match=r"registry index .*/missing\.json") as refused:
        load_index(f"{served}/missing.json", insecure=True)
    assert refused.value.code == "unreachable"


def test_plain_http_is_refused_unless_asked_for(tmp_path: Path, served: str) -> None:
    """Whoever is on the path of an http:// registry serves the index, and with it the sha256
    the archive is checked against."""
    data = b"an archive" * 10
    _remote_registry(tmp_path, data)
    for refused_call in (
        lambda: index_location(f"{served}/registry.json"),
        lambda: load_index(f"{served}/registry.json"),
        lambda: choose(
            index(tool={"1": entry(f"{served}/archives/t.tar.gz")}),
            "https://r.example/registry.json",
            "tool",
            None,
            "linux/amd64",
        ),
        lambda: fetched(_archive_at(f"{served}/archives/t.tar.gz", data), print).__enter__(),
    ):
        with pytest.raises(RnxError) as refused:
            refused_call()
        assert refused.value.code == "invalid"
        assert "is plain http://" in refused.value.message
        assert refused.value.hint and "--insecure-http" in refused.value.hint


def _archive_at(url: str, data: bytes) -> Archive:
    return Archive("tool", "1", url, hashlib.sha256(data).hexdigest(), len(data), ())


def test_a_redirect_from_https_to_http_is_refused() -> None:
    request = urllib.request.Request("https://r.example/registry.json")
    handler = _NoDowngrade(insecure=False)
    with pytest.raises(RnxError, match=r"redirect from https://r\.example/registry\.json: "):
        handler.redirect_request(request, None, 302, "Found", {}, "http://evil.example/r.json")
    followed = _NoDowngrade(insecure=True).redirect_request(
        request, None, 302, "Found", {}, "http://mirror.example/r.json"
    )
    assert followed is not None and followed.full_url == "http://mirror.example/r.json"
    assert handler.redirect_request(
        request, None, 302, "Found", {}, "https://mirror.example/r.json"
    )


class _FakeAgent:
    """Stands in for rnx.client.Client: what `rnx runtime install` sends the agent."""

    installs: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **_target: Any) -> None:
        pass

    def __enter__(self) -> _FakeAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def runtimes(self) -> RuntimeList:
        return RuntimeList.from_dict({"architecture": "amd64", "runtimes": []})

    def install_runtime(self, name: str, chunks: Iterator[bytes], **query: Any) -> Runtime:
        body = b"".join(chunks)
        self.installs.append({"name": name, "body": body, **query})
        return Runtime.from_dict(
            {
                **{"name": name, "release": "1.0.0", "language": "tool", "version": "1"},
                **{"relax": [], "type": "system", "description": "", "architectures": []},
                **{"mounts": [], "environment": {}, "path_prepend": [], "packages": []},
                **{"requirements": {"min_memory": None, "recommended_memory": None}},
                "smoke_test": [],
            }
        )


def _install(monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from click.testing import CliRunner

    from rnx import client as client_module
    from rnx.cli import cli

    _FakeAgent.installs = []
    monkeypatch.setattr(client_module, "Client", _FakeAgent)
    return CliRunner().invoke(cli, ["runtime", "install", *args])


def test_install_sends_the_index_sha256_and_where_the_archive_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"an archive" * 10
    _remote_registry(tmp_path, data)
    result = _install(monkeypatch, "tool", "--registry", str(tmp_path))
    assert result.exit_code == 0, result.output
    [sent] = _FakeAgent.installs
    listed = json.loads((tmp_path / "registry.json").read_text())["runtimes"]["tool"]["1.0.0"]
    assert sent["sha256"] == listed["sha256"]  # the index's: the agent checks the body against it
    assert sent["body"] == data
    assert sent["registry"] == str(tmp_path / "registry.json")
    assert sent["archive"] == str(tmp_path / "archives" / "t.tar.gz")
    assert sent["insecure"] is False


def test_install_over_http_needs_the_flag_and_tells_the_agent(
    tmp_path: Path, served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _remote_registry(tmp_path, b"an archive" * 10)
    refused = _install(monkeypatch, "tool", "--registry", f"{served}/registry.json")
    assert refused.exit_code == 2
    assert "is plain http://" in refused.output and "--insecure-http" in refused.output
    assert _FakeAgent.installs == []
    allowed = _install(
        monkeypatch, "tool", "--registry", f"{served}/registry.json", "--insecure-http"
    )
    assert allowed.exit_code == 0, allowed.output
    [sent] = _FakeAgent.installs
    assert sent["insecure"] is True
    assert sent["registry"] == f"{served}/registry.json"
    assert sent["archive"] == f"{served}/archives/t.tar.gz"
