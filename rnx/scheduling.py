"""`rnx job run --schedule` with a calendar expression: a schedule (POST /v1/schedules), named
by --name, made of the job's flags; no attaching (rnx schedule shows it, rnx job list
--schedule its runs)."""

from __future__ import annotations

from typing import Any

import click

from rnx import values
from rnx.context import Context


def make_schedule(
    ctx: Context,
    command: tuple[str, ...],
    *,
    env: dict[str, str],
    secret_env: dict[str, str],
    limits: dict[str, Any],
    flags: dict[str, Any],
) -> None:
    """--schedule with a calendar expression: a schedule, named by --name; no attaching."""
    for flag, given, why in (
        ("--upload", flags["upload"] or flags["upload_dir"], "an upload is one job's"),
        ("--secret-env", secret_env, "a schedule keeps no secret values at rest for its runs"),
    ):
        if given:
            raise click.UsageError(f"{flag}: {why}; give its runs their files on a volume")
    priority = flags["priority"]
    schedule = ctx.ask(
        lambda client: client.create_schedule(
            flags["schedule"],
            list(command),
            name=flags["name"],
            overlap=flags["overlap"],
            catch_up=flags["catch_up"],
            env=env,
            workdir=flags["workdir"],
            relax=flags["relax"],
            volumes=flags["volume"],
            network=flags["network"],
            allow_egress=flags["allow_egress"],
            runtime=flags["runtime"],
            priority=None if priority is None else values.priority(priority),
            **limits,
        )
    )
    if schedule is None:
        return
    upcoming = schedule.next_elapse.isoformat() if schedule.next_elapse else "never"
    click.secho(
        f"Schedule {schedule.name or schedule.id} {schedule.state}: {schedule.spec.normalized}, "
        f"next {upcoming} ({schedule.timer})",
        fg="cyan",
        err=True,
    )
    for warning in schedule.warnings:
        click.secho(f"Warning: {warning}", fg="yellow", err=True)
    click.echo(schedule.id)
