"""rnx runtime list|info|install|remove|test|validate."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from rnx.attach import attach
from rnx.context import Context, pass_context
from rnx.errors import RnxError
from rnx.views import emit_json, human_bytes, say, table, upload_progress

if TYPE_CHECKING:
    from rnx.client import Runtime


@click.group("runtime")
def group() -> None:
    """Language runtimes jobs select with `rnx job run --runtime=NAME`."""


@group.command("list")
@pass_context
def list_(ctx: Context) -> None:
    """The runtimes installed on the agent's host."""
    answer = ctx.ask(lambda client: client.runtimes())
    if answer is None:
        return
    rows = [
        [r.name, r.language, r.version, r.release, ",".join(r.relax) or "-", r.description]
        for r in answer.runtimes
    ]
    if not rows:
        say(f"No runtimes installed ({answer.architecture}).", err=True)
        return
    table(["NAME", "LANGUAGE", "VERSION", "RELEASE", "RELAX", "DESCRIPTION"], rows)


@group.command()
@click.argument("name")
@pass_context
def info(ctx: Context, name: str) -> None:
    """A runtime in detail: mounts, environment, requirements, packages."""
    runtime = ctx.ask(lambda client: client.runtime(_canonical(name)))
    if runtime is None:
        return
    needs = runtime.requirements
    lines = [
        ("Name", f"{runtime.name} ({runtime.language} {runtime.version})"),
        ("Release", runtime.release),
        ("Description", runtime.description or "-"),
        ("Architectures", ", ".join(runtime.architectures) or "any"),
        ("Directory", runtime.directory or "-"),
        ("Min memory", human_bytes(needs.min_memory)),
        ("Recommended", human_bytes(needs.recommended_memory)),
        ("Relaxes", ", ".join(runtime.relax) or "nothing"),
        ("PATH prepend", ":".join(runtime.path_prepend) or "-"),
        ("Smoke test", " ".join(runtime.smoke_test) or "-"),
        ("Jobs using it", ", ".join(j[:8] for j in runtime.jobs) or "none"),
        *_provenance(runtime),
    ]
    for key, value in lines:
        say(f"{key + ':':<16}{value}")
    say("Mounts:")
    for mount in runtime.mounts:
        only = f" only {', '.join(mount.selective)}" if mount.selective else ""
        mode = "ro" if mount.readonly else "rw"
        say(f"  {mount.source} -> {mount.target} ({mode}){only}")
    if runtime.environment:
        say("Environment:")
        for key, value in runtime.environment.items():
            say(f"  {key}={value}")
    say(f"Packages ({len(runtime.packages)}):")
    for package in runtime.packages:
        say(f"  {package}")


def _provenance(runtime: Runtime) -> list[tuple[str, str]]:
    source = runtime.source
    registry = archive = installed = ""
    if source is not None:
        insecure = " (plain http://, --insecure-http)" if source.insecure else ""
        registry = (source.registry or "-") + insecure
        archive = source.archive or ""
        when = source.installed_at.isoformat() if source.installed_at else None
        installed = " ".join(filter(None, (source.installed_by, when)))
    return [
        ("Registry", registry or "-"),
        ("Archive", archive or "-"),
        ("SHA256", runtime.sha256 or "-"),
        ("Installed by", installed or "-"),
    ]


@group.command()
@click.argument("name")
@click.option(
    "--registry",
    envvar="RNX_REGISTRY",
    required=True,
    help="Registry index: an https:// URL, a file:// URL or a local path (env RNX_REGISTRY).",
)
@click.option(
    "--force", is_flag=True, help="Install even if this release, from this archive, is installed."
)
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Accept a plain http:// registry or archive (admin only; recorded with the runtime).",
)
@pass_context
def install(ctx: Context, name: str, registry: str, force: bool, insecure_http: bool) -> None:
    """Install NAME[@VERSION] from a registry (maintainer or admin).

    rnx fetches the index and the archive, checks the archive's size and sha256 against the
    index, and streams it to the agent, which checks them again, unpacks it safely and moves
    it into place in one step; `rnx runtime info` shows the registry, archive and sha256 it
    came from. A runtime that relaxes isolation needs an admin. Plain http:// (registry,
    archive or a redirect) is refused: anyone on the way could change the index and the sha256
    with it. --insecure-http accepts it, and the agent then allows admins only.
    """
    from rnx import registry as registries

    base, _, version = name.partition("@")
    base = _canonical(base)
    insecure = insecure_http
    with ctx.client() as client:
        agent = client.runtimes()
        location = registries.index_location(registry, insecure=insecure)
        archive = registries.choose(
            registries.load_index(location, insecure=insecure),
            location,
            base,
            version or None,
            f"linux/{agent.architecture}",
            insecure=insecure,
        )
        current = next((r for r in agent.runtimes if r.name == base), None)
        same = current and (current.release, current.sha256) == (archive.version, archive.sha256)
        if same and not force:
            ctx.say(f"{base} {archive.version} is already installed (--force reinstalls)")
            if ctx.json:
                emit_json(current)
            return
        what = f"{base} {archive.version}"
        with contextlib.ExitStack() as stack:
            with upload_progress(quiet=ctx.json, label=f"fetch {what}") as progress:
                fetched = registries.fetched(
                    archive, lambda n: progress(n, archive.size), insecure=insecure
                )
                stream = stack.enter_context(fetched)
            with upload_progress(quiet=ctx.json, label=f"install {what}") as progress:
                result = client.install_runtime(
                    base,
                    _counted(stream, lambda n: progress(n, archive.size)),
                    size=archive.size,
                    sha256=archive.sha256,  # the index's, never one computed from the download
                    registry=location,
                    archive=archive.url,
                    insecure=insecure,
                )
    if ctx.json:
        emit_json(result)
    else:
        relax = f"; relaxes {', '.join(result.relax)}" if result.relax else ""
        say(f"Installed {result.name} {result.release} ({result.language} {result.version}){relax}")


@group.command()
@click.argument("name")
@pass_context
def remove(ctx: Context, name: str) -> None:
    """Remove an installed runtime (maintainer or admin); refused while a job uses it."""
    result = ctx.ask(lambda client: client.remove_runtime(_canonical(name)))
    if result is not None:
        say(f"Removed {result.removed} {result.release}")


@group.command()
@click.argument("name")
@pass_context
def test(ctx: Context, name: str) -> None:
    """Run the runtime's smoke test as a job; exits with its exit code."""
    with ctx.client() as client:
        job = client.test_runtime(_canonical(name))
        ctx.say(f"Job {job.id} runs the smoke test of {name}: {' '.join(job.spec.argv)}")
        code = attach(client, job.id, as_json=ctx.json)
    if not ctx.json:
        click.secho(
            f"runtime {name}: smoke test {'passed' if code == 0 else 'FAILED'}",
            fg="green" if code == 0 else "red",
            err=True,
        )
    sys.exit(code)


@group.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--tree",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A built runtime's directory: also check that every mount source is in it.",
)
@pass_context
def validate(ctx: Context, file: Path, tree: Path | None) -> None:
    """Check a runtime.yml against the schema (docs/runtimes.md); exit 2 with the first error."""
    with ctx.client() as client:
        answer = client.validate_runtime(file.read_text())
    runtime = answer.runtime
    if tree is not None:
        for index, mount in enumerate(runtime.mounts):
            source = tree / mount.source
            entries = [source / e for e in mount.selective or ()]
            for path in [source, *entries]:
                if not path.exists():
                    raise RnxError("invalid", f"{file}: mounts[{index}]: {path} is not in {tree}")
    if ctx.json:
        emit_json(answer)
    else:
        say(f"{file}: valid runtime {runtime.name} ({len(runtime.mounts)} mounts)")


def _canonical(name: str) -> str:
    """java:17 -> java-17, the design document's spelling."""
    return name.replace(":", "-", 1) if ":" in name.split("@", 1)[0] else name


def _counted(stream: BinaryIO, advance: Callable[[int], None]) -> Iterator[bytes]:
    """The file in 1 MiB chunks, each reported to a progress callback as it goes."""
    sent = 0
    while chunk := stream.read(1024 * 1024):
        sent += len(chunk)
        advance(sent)
        yield chunk
