"""rnx job exec: run a command inside a running job."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from rnx import values
from rnx.context import Context, pass_context
from rnx.interactive import attached_run, relay, terminal_size


@click.command(
    "exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.argument("job_id", metavar="JOB")
@click.option(
    "-e", "--env", multiple=True, metavar="K=V", help="Environment variable (repeatable)."
)
@click.option("--workdir", metavar="DIR", help="Working directory, relative to the job's /work.")
@click.option(
    "--timeout",
    metavar="DURATION",
    help="Kill the command after this long (30s, 5m): it then exits with 124.",
)
@click.option(
    "-i",
    "--interactive",
    is_flag=True,
    help="Send stdin to the command (the default when stdin is not a terminal).",
)
@click.option(
    "-t", "--tty", is_flag=True, help="Give the command a terminal (with -i: a shell, an editor)."
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_context
def command(ctx: Context, /, job_id: str, command: tuple[str, ...], **flags: Any) -> None:
    """Run COMMAND inside the running job JOB and exit with its exit code.

    It runs in the job's sandbox: its files, user, network and limits (a server the job started
    on 127.0.0.1 is reachable). Its output is also in the journal under the job's unit, with
    EXEC_ID. JOB is the job's id, name or a unique id prefix.

    \b
      rnx job exec dev -- python3 -m pytest -q
      echo 'print(1)' | rnx job exec dev -- python3
      rnx job exec -it dev -- bash
    """
    if command[:1] == ("--",):  # after JOB, click passes `--` on as an argument
        command = command[1:]
    if not command:
        raise click.UsageError("no COMMAND given after JOB")
    environment = dict(values.key_value("--env", e) for e in flags["env"])
    timeout = flags["timeout"]
    seconds = values.duration("--timeout", timeout) if timeout is not None else None
    tty: bool = flags["tty"]
    stdin = flags["interactive"] or tty or not os.isatty(sys.stdin.fileno())
    rows, cols = terminal_size() if tty else (0, 0)
    with ctx.client() as client:
        session = client.open_exec(
            job_id,
            list(command),
            env=environment,
            workdir=flags["workdir"],
            timeout=seconds,
            tty=tty,
            stdin=stdin,
            rows=rows,
            cols=cols,
        )
        end = relay(session, tty=tty, stdin=stdin)
    if end is None:
        sys.exit(1)
    if end.timed_out and not ctx.json:
        click.secho(f"\nrnx: the command ran past its timeout ({timeout})", fg="red", err=True)
    sys.exit(end.exit_code)


@click.command("attach")
@click.argument("job_id", metavar="JOB")
@pass_context
def attach(ctx: Context, job_id: str) -> None:
    """Attach this terminal to a job run with -t (or this stdin to one run with -i); Ctrl-C
    and every key go to the job. Ends when its command ends; exits with its exit code.

    JOB is its id, its name (--name) or a unique prefix of its id (4+ characters)."""
    with ctx.client() as client:
        job = client.get(job_id)

        def follow() -> int:
            final = client.wait(job.id)
            return final.exit_code if final.exit_code is not None else 1

        sys.exit(attached_run(client, job.id, tty=job.spec.tty, follow=follow))
