"""joblet-agent: parse, set up logging, wire, run. Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from joblet_agent.adapters.config_file import load_config
from joblet_agent.adapters.journal_logging import (
    AuditJournalHandler,
    JournalHandler,
    journal_is_stderr,
)
from joblet_agent.domain.config import DEFAULT_CONFIG_PATH
from joblet_agent.errors import JobletError
from joblet_agent.pki.commands import pki


class _JournalFields(logging.Filter):
    """On a terminal, show the JOB_ID field in the text."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = getattr(record, "JOB_ID", None)
        record.job = f" JOB_ID={job}" if job else ""
        return True


def _setup_logging(verbose: bool) -> None:
    handlers: list[logging.Handler]
    if journal_is_stderr():
        # Structured fields (journalctl JOB_ID=...); audit entries also in their own journal.
        handlers = [JournalHandler("joblet-agent"), AuditJournalHandler("joblet-agent")]
        for handler in handlers:
            handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.addFilter(_JournalFields())
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s%(job)s"))
        handlers = [handler]
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_CONFIG_PATH,
    show_default=True,
    help="Agent configuration file.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, verbose: bool) -> None:
    """The Joblet agent: runs jobs as hardened transient systemd units."""
    _setup_logging(verbose)
    ctx.obj = config_path


@cli.command()
@click.option(
    "--listen",
    type=click.Path(path_type=Path),
    default=None,
    help="Bind this Unix socket when not socket-activated (development only).",
)
@click.pass_obj
def serve(config_path: Path, listen: Path | None) -> None:
    """Serve the API on the sockets passed by joblet.socket."""
    from joblet_agent.daemon import serve as run_daemon

    try:
        config = load_config(config_path)
        asyncio.run(run_daemon(config, listen=listen))
    except JobletError as exc:
        click.echo(
            f"joblet-agent: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), err=True
        )
        sys.exit(1)


@cli.command("check-config")
@click.pass_obj
def check_config(config_path: Path) -> None:
    """Validate the configuration file and print the effective settings."""
    try:
        config = load_config(config_path)
    except JobletError as exc:
        click.echo(f"joblet-agent: {exc.message}", err=True)
        sys.exit(1)
    click.echo(repr(config))


cli.add_command(pki)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
