"""The rnx command group: global options, error-to-exit-code mapping, sub-command registry."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from rnx import __version__
from rnx.exit_codes import exit_code_for

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Context:
    socket_path: str | None
    config: str | None
    node: str | None
    json: bool

    def client(self) -> Any:
        from rnx.client import Client

        return Client(socket=self.socket_path, config=self.config, node=self.node)

    def ask(self, call: Callable[[Any], Any]) -> Any:
        """One request's answer for people to read; None once printed as JSON (--json)."""
        with self.client() as client:
            answer = call(client)
        if self.json:
            from rnx.output import emit_json

            emit_json(answer)
            return None
        return answer


def handle_errors(func: F) -> F:
    """Turn RnxError into a readable message and the documented exit code."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rnx.errors import RnxError

        try:
            return func(*args, **kwargs)
        except RnxError as exc:
            click.secho(f"Error: {exc.message}", fg="red", err=True)
            if exc.hint:
                click.echo(f"Hint: {exc.hint}", err=True)
            sys.exit(exit_code_for(exc.code))

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


def _register() -> None:
    from rnx.commands import job, network, runtime, volume

    cli.add_command(job.group)
    cli.add_command(volume.group)
    cli.add_command(network.group)
    cli.add_command(runtime.group)


_register()
