"""rnx job cp | ls | cat: files out of a job (running, or ended until its files are reclaimed)
and into a running one."""

from __future__ import annotations

import sys

import click

from rnx.context import Context, pass_context
from rnx.views import emit_json, human_bytes, table, upload_progress, without_controls

RAW_HELP = (
    "Print the file as it is, escape sequences included (on a terminal, control characters "
    "are removed otherwise)."
)


def _job_path(text: str) -> tuple[str, str] | None:
    """JOB:PATH -> (JOB, PATH); None for a local path (./x, /x, x without ':')."""
    job, sep, path = text.partition(":")
    if not sep or not job or "/" in job:
        return None
    return job, path or "/work"


@click.command("cp")
@click.argument("source")
@click.argument("dest")
@pass_context
def cp(ctx: Context, source: str, dest: str) -> None:
    """Copy files out of a job or into a running one (as docker cp does).

    One of SOURCE and DEST is JOB:PATH (JOB: id, name or id prefix; PATH under /work, or
    relative to it, or /volumes/NAME/...). Directories are copied whole; links stay links.

    \b
      rnx job cp pipeline:/work/out.csv ./
      rnx job cp ./fix.py dev:/work/src/
      rnx job cp dev:/work/results ./results
    """
    out, into = _job_path(source), _job_path(dest)
    if (out is None) == (into is None):
        raise click.UsageError("exactly one of SOURCE and DEST must be JOB:PATH")
    with ctx.client() as client, upload_progress(quiet=ctx.json, label="copy") as progress:
        if out is not None:
            written = client.download(out[0], out[1], dest, progress)
            if ctx.json:
                emit_json({"path": str(written)})
            return
        assert into is not None
        copied = client.copy_in(into[0], source, into[1], progress)
    if ctx.json:
        emit_json(copied)
    else:
        click.secho(
            f"Copied {copied.files} file(s), {copied.directories} directory(ies), "
            f"{copied.links} link(s), {human_bytes(copied.bytes)} into {copied.path}",
            fg="cyan",
            err=True,
        )


@click.command("ls")
@click.argument("job_id", metavar="JOB")
@click.argument("path", default="/work")
@pass_context
def ls(ctx: Context, job_id: str, path: str) -> None:
    """List a directory of a job's (default /work), or show one file: name, type, size, mode,
    modification time; a link shows its target (never followed)."""
    listing = ctx.ask(lambda client: client.list_files(job_id, path))
    if listing is None:
        return
    rows = [
        [
            without_controls(e.name) + (f" -> {without_controls(e.target)}" if e.target else ""),
            e.type,
            str(e.size),
            f"{e.mode:04o}",
            e.mtime.strftime("%Y-%m-%d %H:%M:%S"),
        ]
        for e in listing.entries
    ]
    table(["NAME", "TYPE", "SIZE", "MODE", "MODIFIED (UTC)"], rows)


@click.command("cat")
@click.argument("job_id", metavar="JOB")
@click.argument("path")
@click.option("--raw", is_flag=True, help=RAW_HELP)
@pass_context
def cat(ctx: Context, job_id: str, path: str, raw: bool) -> None:
    """Print a file of a job's (running, or ended until its files are reclaimed: the agent's
    jobs.work_retention after its end)."""
    with ctx.client() as client:
        data = client.read_file(job_id, path)
    if sys.stdout.isatty() and not raw:
        text = data.decode("utf-8", "replace")
        sys.stdout.write("\n".join(without_controls(line) for line in text.split("\n")))
        sys.stdout.flush()
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
