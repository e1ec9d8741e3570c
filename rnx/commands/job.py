"""rnx job run|list|status|log|stop|cancel|delete|delete-all."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from rnx import values
from rnx.attach import attach, follow_log
from rnx.context import Context, pass_context
from rnx.interactive import attached_run
from rnx.scheduling import make_schedule
from rnx.views import (
    describe_limits,
    emit_json,
    job_details,
    key_values,
    owner_text,
    say,
    state_text,
    table,
    upload_progress,
)

if TYPE_CHECKING:
    from rich.text import Text

    from rnx.client import Job

RAW_HELP = (
    "Print the job's output as it is, escape sequences included (on a terminal, control "
    "characters are removed otherwise)."
)


@click.group("job")
def group() -> None:
    """Run and manage jobs."""


@group.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--max-cpu", metavar="PERCENT", help="CPU limit in percent of one core (100 = one core)."
)
@click.option(
    "--cpus", metavar="N", help="CPU limit in cores, fractions allowed (Docker's meaning)."
)
@click.option("--max-memory", metavar="SIZE", help="Memory limit: MB when bare, or 512M, 2G.")
@click.option(
    "--max-iobps",
    metavar="SIZE",
    help="Disk read and write limit per second: bytes when bare, or 10M.",
)
@click.option("--cpu-cores", metavar="LIST", help="Pin to these CPUs, e.g. 0-1,3.")
@click.option(
    "--work-size", metavar="SIZE", help="Size of the job's /work: MB when bare, or 512M, 4G."
)
@click.option(
    "--max-tasks", metavar="N", help="Most processes and threads at once (default from the agent)."
)
@click.option(
    "--timeout",
    "--max-runtime",
    "timeout",
    metavar="DURATION",
    help="Stop the job after this long: seconds, or 30s, 5m, 1h. Ends as TIMEOUT, exit 124.",
)
@click.option(
    "--idle-timeout",
    metavar="DURATION",
    help="End the job when no exec, attach or file call touched it for this long (15m).",
)
@click.option(
    "-e", "--env", multiple=True, metavar="K=V", help="Environment variable (repeatable)."
)
@click.option(
    "-s",
    "--secret-env",
    multiple=True,
    metavar="K=V",
    help="Secret environment variable: passed to the job, never shown (repeatable).",
)
@click.option("--name", help="A name for the job (lowercase letters, digits, '-').")
@click.option("--workdir", metavar="DIR", help="Working directory, relative to the job's /work.")
@click.option(
    "--relax",
    multiple=True,
    type=click.Choice(["wx-memory"]),
    help="Loosen the isolation for this job (admin only): wx-memory for JIT runtimes.",
)
@click.option(
    "--upload",
    multiple=True,
    metavar="FILE",
    help="Send a file to the job's /work/<name> (repeatable; its mode is kept).",
)
@click.option(
    "--upload-dir",
    multiple=True,
    metavar="DIR",
    help="Send a directory to /work/<dirname>/ (repeatable; links are kept as links).",
)
@click.option(
    "--volume",
    multiple=True,
    metavar="NAME[:ro]",
    help="Mount a volume at /volumes/NAME, read-write or read-only (repeatable).",
)
@click.option(
    "--network",
    metavar="NET",
    help="none (default: loopback only), isolated (outbound NAT only), host (admin only), "
    "or a network's name (rnx network list).",
)
@click.option(
    "--allow-egress",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Allow outbound traffic only to these (repeatable): an IPv4 address, prefix or DNS "
    "name (resolved at submit), with an optional port. Needs --network.",
)
@click.option(
    "--runtime",
    metavar="NAME",
    help="Run in an installed runtime: python-3.11-ml, java:17, NAME@RELEASE (rnx runtime list).",
)
@click.option(
    "--schedule",
    metavar="WHEN",
    help="Start it later: 30s, 5m, 1h30m, in 10m, 2026-12-24T18:00:00Z, '2026-12-24 18:00' (the "
    "host's time zone); or every time a systemd calendar expression elapses: hourly, *:0/15, "
    "'Mon..Fri *-*-* 02:00' (a schedule: rnx schedule).",
)
@click.option(
    "--overlap",
    type=click.Choice(["skip", "queue", "parallel"]),
    help="With a recurring --schedule: what a firing does while a run has not ended: skip "
    "(default), queue (run once the previous ended), parallel.",
)
@click.option(
    "--catch-up/--no-catch-up",
    default=True,
    help="With a recurring --schedule: a firing missed while no agent ran runs once at its "
    "start (default), or never.",
)
@click.option(
    "--priority",
    metavar="PRIORITY",
    help="Its place in the queue when the agent has no room for it now: low, normal (default), "
    "high, or 0-9 (higher runs first; first come, first served within one).",
)
@click.option("-d", "--detach", is_flag=True, help="Print the job id and return at once.")
@click.option(
    "-i",
    "--interactive",
    is_flag=True,
    help="Send stdin to the command (it reads /dev/null otherwise).",
)
@click.option(
    "-t",
    "--tty",
    is_flag=True,
    help="Give the command a terminal; this one is attached to it (with -i: a REPL, a shell).",
)
@click.option("--raw", is_flag=True, help=RAW_HELP)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_context
def run(ctx: Context, /, command: tuple[str, ...], detach: bool, raw: bool, **flags: Any) -> None:
    """Run COMMAND as a job; stream its output and exit with its exit code.

    With --schedule WHEN it starts later (30s, in 10m, 2026-12-24T18:00:00Z), or runs every
    time a systemd calendar expression elapses (hourly, '*:0/15'): a schedule (rnx schedule),
    whose id is printed.

    The command starts at `--` or at the first argument that is not an option; everything after
    it belongs to the job:

    \b
      rnx job run --max-memory=256 python3 -c "print('hi')"
      rnx job run --max-cpu 50 --timeout 5m -- sh -c 'make test'
    """
    limits = _limits(flags)
    env = dict(values.key_value("--env", e) for e in flags["env"])
    secret_env = dict(values.key_value("--secret-env", s) for s in flags["secret_env"])
    if flags["schedule"] and values.recurring(flags["schedule"]):
        make_schedule(ctx, command, env=env, secret_env=secret_env, limits=limits, flags=flags)
        return
    with ctx.client() as client, upload_progress(quiet=ctx.json) as progress:
        job = client.run(
            list(command),
            env=env,
            secret_env=secret_env,
            name=flags["name"],
            workdir=flags["workdir"],
            relax=flags["relax"],
            uploads=flags["upload"],
            upload_dirs=flags["upload_dir"],
            progress=progress,
            volumes=flags["volume"],
            network=flags["network"],
            allow_egress=flags["allow_egress"],
            runtime=flags["runtime"],
            priority=None if flags["priority"] is None else values.priority(flags["priority"]),
            schedule=flags["schedule"],
            tty=flags["tty"],
            stdin=flags["interactive"] or flags["tty"],
            **limits,
        )
        if ctx.json and detach:
            emit_json(job)
            return
        if not ctx.json:
            place = f" #{job.queue_position}" if job.queue_position else ""
            if job.scheduled_for and job.state == "SCHEDULED":
                place = f" for {job.scheduled_for.isoformat()}"
            click.secho(
                f"Job {job.id} {job.state}{place}: {describe_limits(job.spec.limits)}",
                fg="cyan",
                err=True,
            )
            for warning in job.warnings:
                click.secho(f"Warning: {warning}", fg="yellow", err=True)
        if detach:
            say(job.id)
            return
        if flags["tty"] or flags["interactive"]:
            sys.exit(
                attached_run(
                    client,
                    job.id,
                    tty=flags["tty"],
                    follow=lambda: attach(client, job.id, as_json=ctx.json, raw=raw),
                )
            )
        sys.exit(attach(client, job.id, as_json=ctx.json, raw=raw))


def _limits(flags: dict[str, Any]) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    cpu = values.cpu_percent(flags["max_cpu"], flags["cpus"])
    if cpu is not None:
        limits["cpu_percent"] = cpu
    if flags["max_memory"] is not None:
        limits["memory_bytes"] = values.size("--max-memory", flags["max_memory"], bare_unit="M")
    if flags["max_iobps"] is not None:
        bps = values.size("--max-iobps", flags["max_iobps"], bare_unit="")
        limits["io_read_bps"] = limits["io_write_bps"] = bps
    if flags["cpu_cores"] is not None:
        limits["cpu_cores"] = flags["cpu_cores"]
    if flags["work_size"] is not None:
        limits["work_bytes"] = values.size("--work-size", flags["work_size"], bare_unit="M")
    if flags["max_tasks"] is not None:
        limits["max_tasks"] = int(
            values.positive_number("--max-tasks", flags["max_tasks"], integer=True)
        )
    if flags["timeout"] is not None:
        limits["timeout_sec"] = values.duration("--timeout", flags["timeout"])
    if flags["idle_timeout"] is not None:
        limits["idle_timeout_sec"] = values.duration("--idle-timeout", flags["idle_timeout"])
    return limits


@group.command("list")
@click.option("--state", help="Only jobs in these states (comma-separated).")
@click.option(
    "--owner",
    metavar="OWNER",
    help="Only this owner's jobs: NAME (of your own kind), cert:NAME or unix:NAME.",
)
@click.option("--schedule", metavar="SCHEDULE", help="Only the runs of this schedule (its name).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@pass_context
def list_(
    ctx: Context, state: str | None, owner: str | None, schedule: str | None, limit: int
) -> None:
    """List jobs, newest first: every job's state; another owner's arguments show as ***
    below the maintainer role."""
    params = {"limit": str(limit)}
    if state:
        params["state"] = state
    if owner:
        params["owner"] = owner
    if schedule:
        params["schedule"] = schedule
    jobs = ctx.ask(lambda client: client.list(**params))
    if jobs is None:
        return
    rows: list[list[str | Text]] = [
        [
            j.id[:8],
            j.spec.name or "",
            state_text(j.state, j.queue_position),
            "" if j.exit_code is None else str(j.exit_code),
            owner_text(j.owner),
            j.created_at.strftime("%m-%d %H:%M:%S"),
            " ".join(j.spec.argv)[:50],
        ]
        for j in jobs
    ]
    table(["ID", "NAME", "STATE", "EXIT", "OWNER", "CREATED (UTC)", "COMMAND"], rows)


@group.command()
@click.argument("job_id", metavar="JOB")
@pass_context
def status(ctx: Context, job_id: str) -> None:
    """Show one job in detail.

    JOB is its id, its name (--name) or a unique prefix of its id (4+ characters)."""
    with ctx.client() as client:
        job = client.get(job_id)
        metrics = client.metrics(job_id) if job.state == "RUNNING" else None
    if ctx.json:
        emit_json({**job.to_dict(), "metrics": metrics.unit.to_dict() if metrics else None})
        return
    key_values(job_details(job, metrics.unit if metrics else None))


@group.command()
@click.argument("job_id", metavar="JOB")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until the job ends.")
@click.option("--raw", is_flag=True, help=RAW_HELP)
@pass_context
def log(ctx: Context, job_id: str, follow: bool, raw: bool) -> None:
    """Print a job's output (from the journal).

    JOB is its id, its name (--name) or a unique prefix of its id (4+ characters)."""
    with ctx.client() as client:
        code = follow_log(client, job_id, follow=follow, as_json=ctx.json, raw=raw)
    if code:
        sys.exit(code)


@group.command()
@click.argument("job_id", metavar="JOB")
@pass_context
def stop(ctx: Context, job_id: str) -> None:
    """Stop a running job: SIGTERM to all its processes, then SIGKILL after the grace period.

    JOB is its id, its name (--name) or a unique prefix of its id (4+ characters)."""
    with ctx.client() as client:
        _show_state(ctx, client.stop(job_id))


@group.command()
@click.argument("job_id", metavar="JOB")
@pass_context
def cancel(ctx: Context, job_id: str) -> None:
    """Cancel a job that has not started running yet (SCHEDULED or QUEUED).

    JOB is its id, its name (--name) or a unique prefix of its id (4+ characters)."""
    with ctx.client() as client:
        _show_state(ctx, client.cancel(job_id))


@group.command()
@click.argument("job_id", metavar="JOB")
@pass_context
def delete(ctx: Context, job_id: str) -> None:
    """Delete an ended job's record and files (running jobs are refused).

    JOB is its id, its name (--name) or a unique prefix of its id (4+ characters)."""
    result = ctx.ask(lambda client: client.delete(job_id))
    if result is not None:
        say(f"Deleted job {result.deleted}")


@group.command("delete-all")
@pass_context
def delete_all(ctx: Context) -> None:
    """Delete every ended job; running jobs are skipped and counted."""
    result = ctx.ask(lambda client: client.delete_all())
    if result is not None:
        say(f"Deleted {result.deleted} job(s); skipped {result.skipped_running} still running")


def _show_state(ctx: Context, job: Job) -> None:
    if ctx.json:
        emit_json(job)
    else:
        say(f"Job {job.id} {job.state}")
