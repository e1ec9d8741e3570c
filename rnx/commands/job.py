"""rnx job run|list|status|log|stop|delete|delete-all."""

from __future__ import annotations

import sys
from typing import Any

import click

from rnx import exit_codes, values
from rnx.cli import Context, handle_errors
from rnx.output import (
    describe_limits,
    emit_json,
    human_bytes,
    state_text,
    table,
    upload_progress,
)

pass_ctx = click.make_pass_decorator(Context)


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
@click.option("-d", "--detach", is_flag=True, help="Print the job id and return at once.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
@handle_errors
def run(ctx: Context, /, command: tuple[str, ...], detach: bool, **flags: Any) -> None:
    """Run COMMAND as a job; stream its output and exit with its exit code.

    The command starts at `--` or at the first argument that is not an option; everything after
    it belongs to the job:

    \b
      rnx job run --max-memory=256 python3 -c "print('hi')"
      rnx job run --max-cpu 50 --timeout 5m -- sh -c 'make test'
    """
    limits = _limits(flags)
    env = dict(values.key_value("--env", e) for e in flags["env"])
    secret_env = dict(values.key_value("--secret-env", s) for s in flags["secret_env"])
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
            **limits,
        )
        if ctx.json and detach:
            emit_json(job)
            return
        if not ctx.json:
            click.secho(
                f"Job {job['id']} {job['state']}: {describe_limits(job['spec']['limits'])}",
                fg="cyan",
                err=True,
            )
            for warning in job.get("warnings", []):
                click.secho(f"Warning: {warning}", fg="yellow", err=True)
        if detach:
            click.echo(job["id"])
            return
        sys.exit(attach(client, job["id"], as_json=ctx.json))


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
    return limits


def attach(client: Any, job_id: str, *, as_json: bool) -> int:
    """Stream the job's output; Ctrl-C detaches (the job keeps running)."""
    try:
        for event in client.events(job_id, follow=True):
            if event.kind == "log":
                _print_line(event, as_json=as_json)
            elif event.kind == "end":
                final = event.data
                break
        else:
            final = client.get(job_id)
    except KeyboardInterrupt:
        click.secho(
            f"\nDetached; job {job_id} keeps running.\n"
            f"  follow it: rnx job log -f {job_id}\n  stop it:   rnx job stop {job_id}",
            fg="yellow",
            err=True,
        )
        return exit_codes.INTERRUPTED
    if as_json:
        emit_json(final)
    elif final["state"] != "COMPLETED":
        click.secho(
            f"Job {job_id} {final['state']}: {final.get('reason') or ''}".rstrip(": "),
            fg="red",
            err=True,
        )
    code = final.get("exit_code")
    return int(code) if code is not None else 1


@group.command("list")
@click.option("--state", help="Only jobs in these states (comma-separated).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@pass_ctx
@handle_errors
def list_(ctx: Context, state: str | None, limit: int) -> None:
    """List jobs, newest first."""
    params = {"limit": str(limit)}
    if state:
        params["state"] = state
    jobs = ctx.ask(lambda client: client.list(**params))
    if jobs is None:
        return
    rows = [
        [
            j["id"][:8],
            j["spec"]["name"] or "",
            state_text(j["state"]),
            "" if j["exit_code"] is None else str(j["exit_code"]),
            j["owner"],
            j["created_at"][5:19].replace("T", " "),
            " ".join([j["spec"]["command"], *j["spec"]["args"]])[:50],
        ]
        for j in jobs
    ]
    table(["ID", "NAME", "STATE", "EXIT", "OWNER", "CREATED (UTC)", "COMMAND"], rows)


@group.command()
@click.argument("job_id")
@pass_ctx
@handle_errors
def status(ctx: Context, job_id: str) -> None:
    """Show one job in detail (any unique id prefix of 4+ characters)."""
    with ctx.client() as client:
        job = client.get(job_id)
        metrics = client.metrics(job_id) if job["state"] == "RUNNING" else None
    if ctx.json:
        emit_json({**job, "metrics": metrics["unit"] if metrics else None})
        return
    from rnx.output import console

    view = console()
    spec = job["spec"]
    lines = [
        ("ID", job["id"]),
        ("Unit", job["unit"]),
        ("Name", spec["name"] or "-"),
        ("State", state_text(job["state"])),
        ("Owner", job["owner"]),
        ("Command", " ".join([spec["command"], *spec["args"]])),
        ("Limits", describe_limits(spec["limits"])),
    ]
    if spec.get("volumes"):
        mounts = [v["name"] + (":ro" if v["read_only"] else "") for v in spec["volumes"]]
        lines.append(("Volumes", ", ".join(mounts)))
    if spec.get("upload"):
        lines.append(("Upload", spec["upload"]))
    if spec.get("runtime"):
        lines.append(("Runtime", spec["runtime"]))
    lines += [
        ("Created", job["created_at"]),
        ("Started", job["started_at"] or "-"),
        ("Ended", job["ended_at"] or "-"),
        ("Exit code", "-" if job["exit_code"] is None else str(job["exit_code"])),
    ]
    if spec.get("network", "none") != "none":
        endpoint = job.get("endpoint")
        where = f" {endpoint['address']} ({endpoint['hostname']})" if endpoint else ""
        lines.append(("Network", spec["network"] + where))
    for rule in spec.get("allow_egress", []):
        lines.append(("Egress allowed", f"{rule['target']} -> {', '.join(rule['addresses'])}"))
    if job["signal"]:
        lines.append(("Signal", job["signal"]))
    if job["result"]:
        lines.append(("systemd result", job["result"]))
    if job["reason"]:
        lines.append(("Reason", job["reason"]))
    for warning in job["warnings"]:
        lines.append(("Warning", f"[yellow]{warning}[/]"))
    if metrics:
        unit = metrics["unit"]
        cpu = unit.get("CPUUsageNSec")
        lines += [
            ("CPU time", f"{cpu / 1e9:.2f}s" if cpu is not None else "-"),
            ("Memory", human_bytes(unit.get("MemoryCurrent"))),
            ("Tasks", str(unit.get("TasksCurrent", "-"))),
        ]
    for key, value in lines:
        view.print(f"[bold]{key + ':':<16}[/]{value}")


@group.command()
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until the job ends.")
@pass_ctx
@handle_errors
def log(ctx: Context, job_id: str, follow: bool) -> None:
    """Print a job's output (from the journal)."""
    with ctx.client() as client:
        try:
            for event in client.events(job_id, follow=follow):
                if event.kind == "log":
                    _print_line(event, as_json=ctx.json)
        except KeyboardInterrupt:
            sys.exit(exit_codes.INTERRUPTED)


@group.command()
@click.argument("job_id")
@pass_ctx
@handle_errors
def stop(ctx: Context, job_id: str) -> None:
    """Stop a running job: SIGTERM to all its processes, then SIGKILL after the grace period."""
    with ctx.client() as client:
        _show_state(ctx, client.stop(job_id))


@group.command()
@click.argument("job_id")
@pass_ctx
@handle_errors
def cancel(ctx: Context, job_id: str) -> None:
    """Cancel a job that has not started running yet (SCHEDULED)."""
    with ctx.client() as client:
        _show_state(ctx, client.cancel(job_id))


@group.command()
@click.argument("job_id")
@pass_ctx
@handle_errors
def delete(ctx: Context, job_id: str) -> None:
    """Delete an ended job's record and files (running jobs are refused)."""
    result = ctx.ask(lambda client: client.delete(job_id))
    if result is not None:
        click.echo(f"Deleted job {result['deleted']}")


@group.command("delete-all")
@pass_ctx
@handle_errors
def delete_all(ctx: Context) -> None:
    """Delete every ended job; running jobs are skipped and counted."""
    result = ctx.ask(lambda client: client.delete_all())
    if result is not None:
        click.echo(
            f"Deleted {result['deleted']} job(s); skipped {result['skipped_running']} still running"
        )


def _show_state(ctx: Context, job: dict[str, Any]) -> None:
    if ctx.json:
        emit_json(job)
    else:
        click.echo(f"Job {job['id']} {job['state']}")


def _print_line(event: Any, *, as_json: bool) -> None:
    """One log event: the line itself for people, the whole event for programs."""
    if as_json:
        emit_json({"cursor": event.cursor, **event.data})
    else:
        sys.stdout.write(event.data["message"] + "\n")
        sys.stdout.flush()
