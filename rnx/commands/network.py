"""rnx network create|list|show|share|unshare|remove."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from rnx.context import Context, pass_context
from rnx.views import owner_text, say, shares_text, table

WITH_HELP = "NAME (of your own kind: a certificate's, or a local user's), cert:NAME or unix:NAME."

if TYPE_CHECKING:
    from rnx.client import Network


@click.group("network")
def group() -> None:
    """Networks where jobs reach each other by name (docs/networking.md).

    \b
      rnx network create backend --cidr=10.42.0.0/24
      rnx job run -d --network=backend --name=db python3 -m http.server 8080
      rnx job run --network=backend python3 -c "import urllib.request as u; u.urlopen('http://db:8080')"

    A network is its creator's (maintainers and admins create them); developers see and join
    one once its owner shares it with them (rnx network share).
    """


@group.command()
@click.argument("name")
@click.option("--cidr", required=True, metavar="CIDR", help="Private IPv4 range, /16 to /28.")
@click.option("--internal", is_flag=True, help="No way out: jobs reach only each other (no NAT).")
@pass_context
def create(ctx: Context, name: str, cidr: str, internal: bool) -> None:
    """Create a network (maintainer or admin)."""
    network = ctx.ask(lambda client: client.create_network(name, cidr, internal=internal))
    if network is not None:
        kind = "internal" if network.internal else f"NAT via {network.gateway}"
        say(f"Created network {network.name} {network.cidr} ({kind})")


def _jobs(network: Network) -> str:
    return ", ".join(j.hostname for j in network.jobs) or "-"


@group.command("list")
@pass_context
def list_(ctx: Context) -> None:
    """List the networks you may join (maintainers and admins: all), with their CIDR and the
    jobs attached now."""
    networks = ctx.ask(lambda client: client.networks())
    if networks is None:
        return
    rows = [
        [
            n.name,
            n.cidr,
            "internal" if n.internal else "nat",
            owner_text(n.owner),
            shares_text(n.shares),
            str(len(n.jobs)),
            _jobs(n),
        ]
        for n in networks
    ]
    # Addresses and ids: rnx network show NAME.
    columns = ["NAME", "CIDR", "OUTBOUND", "OWNER", "SHARED WITH", "JOBS", "ATTACHED (HOSTNAMES)"]
    table(columns, rows)


@group.command()
@click.argument("name")
@pass_context
def show(ctx: Context, name: str) -> None:
    """Show one network and the jobs attached to it."""
    network = ctx.ask(lambda client: client.network(name))
    if network is None:
        return
    say(f"{network.name}: {network.cidr}, bridge {network.bridge}, ", nl=False)
    say("internal" if network.internal else f"NAT via {network.gateway}")
    shared = shares_text(network.shares)
    say(f"owner {owner_text(network.owner)}, shared with {shared}")
    for job in network.jobs:
        say(f"  {job.address:<16}{job.hostname:<24}{job.id}")


@group.command()
@click.argument("name")
@pass_context
def remove(ctx: Context, name: str) -> None:
    """Remove a network (maintainer or admin); refused while jobs use it."""
    result = ctx.ask(lambda client: client.remove_network(name))
    if result is not None:
        say(f"Removed network {result.removed}")


@group.command()
@click.argument("name")
@click.option("--with", "with_", required=True, metavar="OWNER", help=WITH_HELP)
@click.option(
    "--ro",
    is_flag=True,
    help="Without names: their jobs there keep the default hostname job-<id8> (no --name).",
)
@pass_context
def share(ctx: Context, name: str, with_: str, ro: bool) -> None:
    """Let OWNER see network NAME and run jobs on it (maintainer or admin).

    A share with names lets their jobs take any free hostname there (--name): give it only to
    those you trust with the names your services are known by. Sharing again changes how."""
    network = ctx.ask(lambda client: client.share_network(name, with_=with_, read_only=ro))
    if network is not None:
        say(f"Network {network.name} shared with {shares_text(network.shares)}")


@group.command()
@click.argument("name")
@click.option("--with", "with_", required=True, metavar="OWNER", help=WITH_HELP)
@pass_context
def unshare(ctx: Context, name: str, with_: str) -> None:
    """Stop sharing network NAME with OWNER (jobs running there stay)."""
    network = ctx.ask(lambda client: client.unshare_network(name, with_=with_))
    if network is not None:
        say(f"Network {network.name} shared with {shares_text(network.shares)}")
