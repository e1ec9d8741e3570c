"""rnx network create|list|show|remove."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from rnx.context import Context, pass_context
from rnx.views import say, table

if TYPE_CHECKING:
    from rnx.client import Network


@click.group("network")
def group() -> None:
    """Networks where jobs reach each other by name (docs/networking.md).

    \b
      rnx network create backend --cidr=10.42.0.0/24
      rnx job run -d --network=backend --name=db python3 -m http.server 8080
      rnx job run --network=backend python3 -c "import urllib.request as u; u.urlopen('http://db:8080')"
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
    """List networks with their CIDR and the jobs attached now."""
    networks = ctx.ask(lambda client: client.networks())
    if networks is None:
        return
    rows = [
        [
            n.name,
            n.cidr,
            "internal" if n.internal else "nat",
            str(len(n.jobs)),
            _jobs(n),
        ]
        for n in networks
    ]
    # Addresses and ids: rnx network show NAME.
    table(["NAME", "CIDR", "OUTBOUND", "JOBS", "ATTACHED (HOSTNAMES)"], rows)


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
