"""The rnx command group: global options, the one error-to-exit-code ladder, and the registry of
sub-commands (one line each)."""

from __future__ import annotations

from typing import Any

import click

from rnx import __version__
from rnx.commands import exec as exec_command
from rnx.commands import job, job_file, job_lifetime, network, runtime, schedule, volume
from rnx.context import Context
from rnx.errors import RnxError
from rnx.exit_codes import exit_code_for


class RnxGroup(click.Group):
    """The root group: an RnxError from any command is shown (Error:, Hint:) on stderr and
    becomes its code's exit code (rnx.exit_codes). Bad flags are click's (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RnxError as exc:
            click.secho(f"Error: {exc.message}", fg="red", err=True)
            if exc.hint:
                click.echo(f"Hint: {exc.hint}", err=True)
            ctx.exit(exit_code_for(exc.code))


@click.group(cls=RnxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="RNX_CONFIG",
    default=None,
    help="rnx-config.yml with the nodes (default ~/.rnx/rnx-config.yml).",
)
@click.option("--node", default=None, help="Node of the config to talk to (default: its default).")
@click.option(
    "--socket",
    "socket_path",
    envvar="JOBLET_SOCKET",
    default=None,
    help="Agent's Unix socket (default /run/joblet/joblet.sock).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
# The version from rnx itself: its Debian package installs without the "joblet" distribution's
# metadata (that belongs to the agent's package), and a laptop has only rnx.
@click.version_option(__version__, prog_name="rnx")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    node: str | None,
    socket_path: str | None,
    as_json: bool,
) -> None:
    """rnx: run and manage Joblet jobs.

    \b
    Connects to the default node of ~/.rnx/rnx-config.yml (mutual TLS), or, without that
    file, to the local agent at /run/joblet/joblet.sock (as root, no certificate needed).

    \b
    Exit codes: 0 ok; 1 other error; 2 bad input; 3 not found or ambiguous;
    4 conflict (e.g. deleting a running job); 5 the host cannot enforce a limit;
    6 not allowed or not authenticated; 7 agent unreachable; 8 systemd refused;
    9 bad rnx configuration. `rnx job run` (attached) exits with the job's exit code.
    """
    ctx.obj = Context(socket_path=socket_path, config=config_path, node=node, json=as_json)


cli.add_command(job.group)
job.group.add_command(exec_command.command)
job.group.add_command(exec_command.attach)
for command in (
    job_file.cp,
    job_file.ls,
    job_file.cat,
    job_lifetime.extend,
    job_lifetime.pause,
    job_lifetime.resume,
):
    job.group.add_command(command)
cli.add_command(volume.group)
cli.add_command(network.group)
cli.add_command(runtime.group)
cli.add_command(schedule.group)
