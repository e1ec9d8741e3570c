"""Runtime registries: a JSON index of name -> versions -> archive (url, sha256, size, platforms).

rnx, not the agent, reads the registry and downloads the archive: the agent's unit has no
network (PrivateNetwork=yes) and should not need any. The archive is checked here against the
index's size and sha256, then streamed to the agent, which checks both again before it unpacks.

    {"format": 1,
     "runtimes": {"python-3.11-ml": {"1.0.2": {"url": "python-3.11-ml-1.0.2-amd64.tar.gz",
                                                "sha256": "...", "size": 123,
                                                "platforms": ["linux/amd64"]}}}}

A registry is an https:// URL, a file:// URL, or a local path to the index or to a directory
holding registry.json. Archive URLs may be relative to the index. Plain http:// (a registry,
an archive, or a redirect to one) is refused unless the caller passes insecure=True
(`rnx runtime install --insecure-http`, which the agent then allows admins only): whoever is on
the path could serve another index, and the sha256 the archive is checked against is the index's.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from rnx.errors import RnxError

INDEX_NAME = "registry.json"
MAX_INDEX_BYTES = 16 * 1024 * 1024
TIMEOUT_SEC = 60.0
_CHUNK = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Archive:
    name: str
    version: str
    url: str  # absolute: http(s)://, or a local path
    sha256: str
    size: int
    platforms: tuple[str, ...]


def _is_remote(location: str) -> bool:
    return location.startswith(("https://", "http://"))


def is_plain_http(location: str) -> bool:
    return location.lower().startswith("http://")


def _refuse_plain_http(what: str, url: str, insecure: bool) -> None:
    if is_plain_http(url) and not insecure:
        raise RnxError(
            "invalid",
            f"{what}: {url!r} is plain http://: anyone on the way could change the index and "
            "with it the sha256 the archive is checked against",
            "use an https:// registry; --insecure-http accepts http:// (admin only)",
        )


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but not from https:// to http:// unless insecure."""

    def __init__(self, insecure: bool) -> None:
        self.insecure = insecure

    def redirect_request(  # noqa: PLR0917 (urllib's signature)
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        _refuse_plain_http(f"redirect from {req.full_url}", newurl, self.insecure)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open_remote(url: str, *, insecure: bool) -> Any:
    _refuse_plain_http("registry", url, insecure)
    opener = urllib.request.build_opener(_NoDowngrade(insecure))
    return opener.open(url, timeout=TIMEOUT_SEC)


def index_location(registry: str, *, insecure: bool = False) -> str:
    """The index's URL or local path."""
    if _is_remote(registry):
        _refuse_plain_http("--registry", registry, insecure)
        return registry
    if registry.startswith("file://"):
        registry = urllib.parse.unquote(urllib.parse.urlparse(registry).path)
    elif "://" in registry:
        raise RnxError(
            "invalid",
            f"--registry: {registry!r} is not valid; an https:// URL, a file:// URL or a path",
        )
    path = Path(registry)
    if path.is_dir():
        path = path / INDEX_NAME
    if not path.is_file():
        raise RnxError(
            "not-found",
            f"--registry: {registry!r}: no registry index there ({path} is not a file); a "
            "registry is an https:// URL, a file:// URL or a local path",
        )
    return str(path.resolve())


def load_index(location: str, *, insecure: bool = False) -> dict[str, Any]:
    try:
        if _is_remote(location):
            with _open_remote(location, insecure=insecure) as response:
                raw = response.read(MAX_INDEX_BYTES + 1)
        else:
            with open(location, "rb") as data:
                raw = data.read(MAX_INDEX_BYTES + 1)
    except OSError as exc:
        raise RnxError("unreachable", f"registry index {location}: {exc}") from exc
    if len(raw) > MAX_INDEX_BYTES:
        raise RnxError("invalid", f"registry index {location}: larger than {MAX_INDEX_BYTES}")
    try:
        index = json.loads(raw)
    except ValueError as exc:
        raise RnxError("invalid", f"registry index {location}: not JSON: {exc}") from exc
    if not isinstance(index, dict) or not isinstance(index.get("runtimes"), dict):
        raise RnxError("invalid", f"registry index {location}: no 'runtimes' mapping")
    return index


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    """1.10.0 after 1.9.2: numbers compare as numbers."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.+~_-]", version))


def choose(
    index: dict[str, Any],
    location: str,
    name: str,
    version: str | None,
    platform: str,
    *,
    insecure: bool = False,
) -> Archive:
    """The entry for name (at version, else the highest) that runs on platform."""
    runtimes: dict[str, Any] = index["runtimes"]
    versions = runtimes.get(name)
    if not isinstance(versions, dict) or not versions:
        known = ", ".join(sorted(runtimes)) or "none"
        raise RnxError("not-found", f"runtime {name} is not in the registry; it has: {known}")
    if version is not None and version not in versions:
        raise RnxError(
            "not-found",
            f"runtime {name}@{version} is not in the registry; versions: "
            + ", ".join(sorted(versions, key=_version_key)),
        )
    chosen = version or max(versions, key=_version_key)
    entry = versions[chosen]
    where = f"registry index: runtimes.{name}.{chosen}"
    try:
        url, sha256, size = str(entry["url"]), str(entry["sha256"]).lower(), entry["size"]
        platforms = tuple(str(p) for p in entry.get("platforms", ()))
    except (KeyError, TypeError) as exc:
        raise RnxError("invalid", f"{where}: needs url, sha256 and size ({exc})") from exc
    if not _SHA256.match(sha256) or not isinstance(size, int) or size <= 0:
        raise RnxError("invalid", f"{where}: sha256 must be 64 hex digits and size a count")
    if platforms and platform not in platforms:
        raise RnxError(
            "unsupported",
            f"runtime {name}@{chosen} is built for {', '.join(platforms)}; the agent is {platform}",
        )
    absolute = _absolute(url, location)
    _refuse_plain_http(f"{where}.url", absolute, insecure)
    return Archive(name, chosen, absolute, sha256, size, platforms)


def _absolute(url: str, location: str) -> str:
    if _is_remote(url):
        return url
    if _is_remote(location):
        return urllib.parse.urljoin(location, url)
    if url.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(url).path)
    return str(Path(location).parent / url)


@contextmanager
def fetched(archive: Archive, progress: Progress, *, insecure: bool = False) -> Iterator[BinaryIO]:
    """The archive, opened, after its size and sha256 were checked. A remote one is downloaded
    into a temporary file that is gone afterwards."""
    if _is_remote(archive.url):
        with tempfile.TemporaryFile(prefix="rnx-runtime-") as local:
            try:
                with _open_remote(archive.url, insecure=insecure) as response:
                    _copy_checked(response, archive, progress, local)
            except OSError as exc:
                raise RnxError("unreachable", f"download of {archive.url}: {exc}") from exc
            local.seek(0)
            yield local
        return
    try:
        data = open(archive.url, "rb")  # noqa: SIM115
    except OSError as exc:
        raise RnxError("not-found", f"archive {archive.url}: {exc.strerror}") from exc
    with data:
        _copy_checked(data, archive, progress, None)
        data.seek(0)
        yield data


def _copy_checked(
    source: BinaryIO | Any, archive: Archive, progress: Progress, out: BinaryIO | None
) -> None:
    digest = hashlib.sha256()
    total = 0
    while chunk := source.read(_CHUNK):
        total += len(chunk)
        if total > archive.size:
            raise RnxError(
                "invalid", f"archive {archive.url}: larger than the {archive.size} bytes listed"
            )
        digest.update(chunk)
        if out is not None:
            out.write(chunk)
        progress(total)
    if total != archive.size:
        raise RnxError(
            "invalid", f"archive {archive.url}: {total} bytes, the registry lists {archive.size}"
        )
    if digest.hexdigest() != archive.sha256:
        raise RnxError(
            "invalid",
            f"archive {archive.url}: sha256 {digest.hexdigest()} does not match the registry's "
            f"{archive.sha256}: tampered with or damaged; nothing was installed",
        )
