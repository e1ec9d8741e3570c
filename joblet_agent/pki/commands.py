"""`joblet-agent pki ...`: create the CA, issue and revoke client certificates, list them."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.pki.authority import IssuedCert
from joblet_agent.pki.names import ROLES
from joblet_agent.pki.store import DEFAULT_CLIENT_DAYS, DEFAULT_PKI_DIR, Pki

F = TypeVar("F", bound=Callable[..., Any])


def _reporting_errors(func: F) -> F:
    """A JobletError becomes one line on stderr and exit code 2 (bad input) or 1 (the rest)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except JobletError as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            click.echo(f"joblet-agent pki: {exc.message}{hint}", err=True)
            sys.exit(2 if exc.code is ErrorCode.INVALID else 1)

    return wrapper  # type: ignore[return-value]


def _pki_dir(func: F) -> F:
    option = click.option(
        "--dir",
        "pki_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_PKI_DIR,
        show_default=True,
        help="The PKI directory.",
    )
    return option(func)


@click.group()
def pki() -> None:
    """Manage the CA, the agent's TLS certificate and client certificates."""


@pki.command()
@click.option(
    "--name",
    "extra_names",
    multiple=True,
    metavar="NAME",
    help="Another DNS name or IP address of this host for the server certificate (repeatable).",
)
@click.option("--force", is_flag=True, help="Replace an existing CA (invalidates every client).")
@_pki_dir
@_reporting_errors
def init(*, pki_dir: Path, extra_names: tuple[str, ...], force: bool) -> None:
    """Create the CA, the agent's server certificate and an empty CRL."""
    Pki(pki_dir).init(extra_names, force=force)
    click.echo(f"created the CA and the server certificate in {pki_dir}", err=True)


@pki.command()
@click.option("--name", required=True, help="The client's name (the certificate's CN).")
@click.option(
    "--role",
    required=True,
    type=click.Choice(ROLES),
    help="What the client may do (the certificate's OU).",
)
@click.option("--days", type=int, default=DEFAULT_CLIENT_DAYS, show_default=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the certificate, key and rnx-config.yml [default: ./NAME].",
)
@click.option(
    "--address",
    metavar="HOST:PORT",
    default=None,
    help="The agent's address written to rnx-config.yml [default: this host's FQDN:50051].",
)
@_pki_dir
@_reporting_errors
def client(
    *,
    pki_dir: Path,
    name: str,
    role: str,
    days: int,
    out_dir: Path | None,
    address: str | None,
) -> None:
    """Issue a client certificate and its rnx-config.yml.

    Prints the path of rnx-config.yml, the only line on stdout. Reserved names (root, nobody,
    the role names, system accounts, joblet-*) are refused: what a certificate makes is owned by
    cert:NAME, never by a local user of that name.
    """
    config = Pki(pki_dir).issue_client(name, role, days=days, out_dir=out_dir, address=address)
    click.echo(str(config))


@pki.command()
@click.argument("name_or_serial")
@_pki_dir
@_reporting_errors
def revoke(*, pki_dir: Path, name_or_serial: str) -> None:
    """Revoke a client's certificates.

    NAME_OR_SERIAL is a client name (all its certificates) or one serial from `pki list`.

    The agent reads the new CRL for every new connection, and closes the connections these
    certificates still hold within 2 seconds; no restart is needed.
    """
    for cert in Pki(pki_dir).revoke(name_or_serial):
        click.echo(f"revoked {cert.name} ({cert.role}), serial {cert.serial}")
    click.echo(
        "the agent refuses these certificates from now on and closes their open connections "
        "within 2 s",
        err=True,
    )


@pki.command("renew-crl")
@_pki_dir
@_reporting_errors
def renew_crl(*, pki_dir: Path) -> None:
    """Re-sign the CRL for another 30 days.

    The agent refuses every client once the CRL's next update has passed; revoke also renews it,
    and joblet-crl-renew.timer runs this weekly.
    """
    next_update = Pki(pki_dir).renew_crl()
    click.echo(f"the CRL is valid until {next_update:%Y-%m-%d %H:%M} UTC", err=True)


@pki.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
@_pki_dir
@_reporting_errors
def list_certs(*, pki_dir: Path, as_json: bool) -> None:
    """List the issued client certificates."""
    certs = Pki(pki_dir).list()
    now = datetime.now(UTC)
    if as_json:
        json.dump([_as_dict(c, now) for c in certs], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(certs, now)


def _as_dict(cert: IssuedCert, now: datetime) -> dict[str, object]:
    return {
        "name": cert.name,
        "role": cert.role,
        "serial": cert.serial,
        "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(),
        "revoked": cert.revoked,
        "status": str(cert.status(now)),
    }


def _print_table(certs: list[IssuedCert], now: datetime) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "ROLE", "SERIAL", "EXPIRES", "STATUS"):
        table.add_column(column, no_wrap=True)
    for cert in certs:
        status = cert.status(now)
        table.add_row(
            cert.name,
            cert.role,
            cert.serial,
            f"{cert.not_after:%Y-%m-%d}",
            f"[{status.style}]{status}[/]",
        )
    Console(highlight=False).print(table)
