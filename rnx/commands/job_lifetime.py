"""rnx job extend | pause | resume: a running job's lifetime."""

from __future__ import annotations

import click

from rnx import values
from rnx.context import Context, pass_context
from rnx.views import emit_json


def _show(ctx: Context, job: object) -> None:
    if ctx.json:
        emit_json(job)


@click.command("extend")
@click.argument("job_id", metavar="JOB")
@click.argument("duration")
@pass_context
def extend(ctx: Context, job_id: str, duration: str) -> None:
    """Let a running (or paused) job run DURATION more from now (30m, 2h), whatever its timeout.

    JOB is its id, its name (--name) or a unique prefix of its id (4+ characters)."""
    seconds = values.duration("DURATION", duration)
    with ctx.client() as client:
        job = client.extend(job_id, seconds)
    _show(ctx, job)
    if not ctx.json:
        click.echo(f"Job {job.id} may run until {job.spec.limits.timeout_sec:g}s after its start")


@click.command("pause")
@click.argument("job_id", metavar="JOB")
@pass_context
def pause(ctx: Context, job_id: str) -> None:
    """Freeze every process of a running job (systemd's FreezeUnit; cgroup v2 hosts).

    Its timeout and idle timeout keep counting while it is paused."""
    with ctx.client() as client:
        job = client.pause(job_id)
    _show(ctx, job)
    if not ctx.json:
        click.echo(f"Job {job.id} {job.state}")


@click.command("resume")
@click.argument("job_id", metavar="JOB")
@pass_context
def resume(ctx: Context, job_id: str) -> None:
    """Thaw a paused job."""
    with ctx.client() as client:
        job = client.resume(job_id)
    _show(ctx, job)
    if not ctx.json:
        click.echo(f"Job {job.id} {job.state}")
