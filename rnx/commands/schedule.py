"""rnx schedule list|status|pause|resume|delete: recurring schedules (rnx job run --schedule
with a calendar expression makes one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from rnx.context import Context, pass_context
from rnx.views import key_values, plain, state_text, table

if TYPE_CHECKING:
    from rich.text import Text

    from rnx.client import Schedule

REFERENCE = "SCHEDULE is its name, its id or a unique prefix of its id (4+ characters)."


@click.group("schedule")
def group() -> None:
    """Jobs run every time a systemd calendar expression elapses, on PID 1's timers.

    \b
      rnx job run --schedule '*:0/15' --name report -- sh -c 'date >> /volumes/log/runs'
      rnx schedule list
      rnx job list --schedule report     # its runs: each a job with its own logs
      rnx schedule pause report
    """


def _when(schedule: Schedule) -> str:
    return schedule.next_elapse.strftime("%m-%d %H:%M:%S") if schedule.next_elapse else "-"


@group.command("list")
@pass_context
def list_(ctx: Context) -> None:
    """List schedules: when they fire next, how many runs they made, their latest run's state."""
    schedules = ctx.ask(lambda client: client.schedules())
    if schedules is None:
        return
    rows: list[list[str | Text]] = [
        [
            s.name or "",
            s.id[:8],
            plain(s.state, "cyan" if s.state == "ACTIVE" else "dim"),
            s.spec.normalized,
            _when(s),
            str(s.runs),
            str(s.skipped),
            state_text(s.last_run.state) if s.last_run else "-",
            s.owner,
            " ".join(s.spec.job.argv)[:40],
        ]
        for s in schedules
    ]
    table(
        [
            "NAME",
            "ID",
            "STATE",
            "CALENDAR",
            "NEXT (UTC)",
            "RUNS",
            "SKIPPED",
            "LAST RUN",
            "OWNER",
            "COMMAND",
        ],
        rows,
    )


@group.command()
@click.argument("reference", metavar="SCHEDULE")
@pass_context
def status(ctx: Context, reference: str) -> None:
    """Show one schedule in detail."""
    schedule = ctx.ask(lambda client: client.schedule(reference))
    if schedule is None:
        return
    spec = schedule.spec
    lines: list[tuple[str, str | Text]] = [
        ("ID", schedule.id),
        ("Name", schedule.name or "-"),
        ("State", schedule.state),
        ("Owner", schedule.owner),
        ("Calendar", f"{spec.calendar} ({spec.normalized})"),
        ("Next firing", schedule.next_elapse.isoformat() if schedule.next_elapse else "-"),
        ("Last firing", schedule.last_fired_at.isoformat() if schedule.last_fired_at else "-"),
        ("Timer", schedule.timer),
        ("Command", " ".join(spec.job.argv)),
        ("Overlap", spec.overlap),
        ("Catch up", "yes" if spec.catch_up else "no"),
        ("Priority", str(spec.priority)),
        ("Runs", f"{schedule.runs} (skipped firings: {schedule.skipped})"),
    ]
    if schedule.last_run:
        lines.append(("Last run", state_text(f"{schedule.last_run.state}")))
        lines.append(("Last run id", schedule.last_run.id))
    lines += [("Warning", plain(w, "yellow")) for w in schedule.warnings]
    key_values(lines)


@group.command()
@click.argument("reference", metavar="SCHEDULE")
@pass_context
def pause(ctx: Context, reference: str) -> None:
    """Stop its firings (its timer goes); those that would come meanwhile never run."""
    schedule = ctx.ask(lambda client: client.pause_schedule(reference))
    if schedule is not None:
        click.echo(f"Schedule {schedule.name or schedule.id} {schedule.state}")


@group.command()
@click.argument("reference", metavar="SCHEDULE")
@pass_context
def resume(ctx: Context, reference: str) -> None:
    """Arm its timer again."""
    schedule = ctx.ask(lambda client: client.resume_schedule(reference))
    if schedule is not None:
        click.echo(
            f"Schedule {schedule.name or schedule.id} {schedule.state}: next {_when(schedule)}"
        )


@group.command()
@click.argument("reference", metavar="SCHEDULE")
@pass_context
def delete(ctx: Context, reference: str) -> None:
    """Delete it: its timer goes, its runs still waiting are canceled; past runs stay jobs."""
    result = ctx.ask(lambda client: client.delete_schedule(reference))
    if result is not None:
        canceled = len(result.canceled_runs)
        click.echo(f"Deleted schedule {result.deleted}; canceled {canceled} waiting run(s)")


for _command in (status, pause, resume, delete):
    _command.help = f"{_command.help}\n\n{REFERENCE}"
