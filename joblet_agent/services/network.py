"""Networks: create, list and remove them; give jobs their place on one; keep hosts files current.

The agent decides (addresses, names, rules); helper units run by PID 1 act: the job's
`joblet-netns-<id>.service`, whose network namespace the job joins (units/network.py), for the
job's side, and a short unit running adapters/netlink.py for the host's side (bridges, NAT,
forwarding). Neither runs anything of the job's. The agent itself keeps its private network
namespace and gains no capability.

A named network belongs to its creator, who may share it (domain/sharing.py): a job joins only
a network its owner may use, and takes a name of its choice there only with a share that allows
names (`by`: the job's owner).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import uuid
from collections.abc import Iterable

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.host_routes import free_of
from joblet_agent.domain.job import JobRecord, JobSpec, JobState
from joblet_agent.domain.network import (
    ISOLATED,
    EgressRule,
    Endpoint,
    HostState,
    Network,
    NetworkMode,
    NetworkRequest,
    allocate_address,
    default_hostname,
    hosts_file,
    job_resolv_conf,
    link_name,
    nameservers,
    new_network,
)
from joblet_agent.domain.sharing import Need, Principal, Share, shared_with, unshared
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import Clock, JobStore, NetworkFiles, NetworkStore, Resolver, SystemdManager
from joblet_agent.units.network import NO_NETWORK, JobNetwork, apply_unit_properties, setup_files
from joblet_agent.units.paths import JobPaths

logger = logging.getLogger(__name__)


class HostOverlap(JobletError):
    """A network not made: its CIDR overlaps the host's own addresses or routes."""


# Where networks that jobs name before anyone created them get their /24 (see create_missing).
AUTO_POOL = ipaddress.IPv4Network("10.88.0.0/16")

NET_UNIT_PREFIX = "joblet-net-"
APPLY_TIMEOUT_SEC = 60.0
_LIVE = frozenset({JobState.SCHEDULED, JobState.RUNNING, JobState.PAUSED})


class NetworkService:
    def __init__(
        self,
        config: AgentConfig,
        store: NetworkStore,
        jobs: JobStore,
        *,
        files: NetworkFiles,
        clock: Clock,
        resolve: Resolver,
        python: str,
    ) -> None:
        self.config = config
        self.store = store
        self.jobs = jobs
        self.clock = clock
        self._resolve = resolve
        self._python = python
        self.files = files
        self.systemd: SystemdManager | None = None
        self._lock = asyncio.Lock()  # one host apply at a time
        self._reserved: dict[str, Endpoint] = {}  # job id -> endpoint, until the job ends
        self._isolated_cursor = 0
        self._isolated_ready = False
        # The host's own networks as the last apply found them (adapters/netlink.py): networks
        # made on the spot are chosen among the prefixes that overlap none of them.
        self._host_prefixes: tuple[ipaddress.IPv4Network, ...] = ()
        self._left_out: dict[str, HostOverlap] = {}  # networks it did not make, and why

    def attach(self, systemd: SystemdManager) -> None:
        self.systemd = systemd

    @property
    def isolated(self) -> Network:
        return Network(name=ISOLATED, cidr=self.config.isolated_cidr)

    # -- networks -----------------------------------------------------------------------

    def get(self, name: str) -> Network:
        if name == ISOLATED:
            return self.isolated
        network = self.store.get(name)
        if network is None:
            raise JobletError(
                ErrorCode.NOT_FOUND,
                f"network {name!r} does not exist",
                hint="rnx network list shows the networks; rnx network create makes one",
            )
        return network

    def networks(self, by: Principal | None = None) -> list[Network]:
        """All of them, or those `by` may see: their own and those shared with them."""
        every = self.store.list()
        return every if by is None else [n for n in every if n.shared.allows(by, Need.SEE)]

    def visible(self, name: str, by: Principal) -> Network:
        network = self.get(name)
        network.shared.require(by, Need.SEE)
        return network

    def share(self, name: str, share: Share, by: Principal) -> Network:
        """Share the network with `share.owner` (without names if read_only), or change how."""
        network = self._own(name, by)
        if share.owner == network.owner:
            raise JobletError(
                ErrorCode.INVALID, f"with: {share.owner} owns network {name!r}; nothing to share"
            )
        return self._save(dataclasses.replace(network, shares=shared_with(network.shares, share)))

    def unshare(self, name: str, owner: str, by: Principal) -> Network:
        network = self._own(name, by)
        shares = unshared(network.shares, owner, what=f"network {name!r}")
        return self._save(dataclasses.replace(network, shares=shares))

    def check_join(self, spec: JobSpec, by: Principal) -> None:
        """Refuse a job on a named network `by` may not join, or not under a name of its choice
        (a missing network is left to create_missing and plan)."""
        if NetworkMode.of(spec.network) is None:
            network = self.store.get(spec.network)
            if network is not None:
                need = Need.USE if spec.name else Need.USE_LIMITED
                network.shared.require(by, need, field="network")

    def _own(self, name: str, by: Principal) -> Network:
        network = self.get(name)
        if network.name == ISOLATED:
            raise JobletError(ErrorCode.CONFLICT, "the isolated network is built in: everyone's")
        network.shared.require(by, Need.MANAGE)
        return network

    def _save(self, network: Network) -> Network:
        self.store.save(network)
        shown = ", ".join(f"{s.owner}{' (ro)' if s.read_only else ''}" for s in network.shares)
        logger.info("network %s shared with: %s", network.name, shown or "no one")
        return network

    def attached(self, name: str) -> list[JobRecord]:
        """The live jobs on a network."""
        return [
            r for r in self.jobs.list(states=_LIVE) if r.endpoint and r.endpoint.network == name
        ]

    async def create(self, wanted: NetworkRequest, owner: str) -> Network:
        existing = [*self.store.list(), self.isolated]
        network = new_network(wanted, existing=existing, owner=owner)
        network = dataclasses.replace(network, created_at=self.clock.now())
        self.store.add(network)
        try:
            self._write_files(network)
            await self._apply(making=network.name)
        except BaseException:
            # Nothing half-done: no record, no files; the next apply removes a bridge left over.
            self.store.remove(network.name)
            self.files.remove_network(network.name)
            raise
        logger.info("created network %s (%s) for %s", network.name, network.cidr, owner)
        return network

    async def create_missing(self, spec: JobSpec, owner: str) -> tuple[str, ...]:
        """The named network a job asks for, created if it does not exist (the first free /24
        of AUTO_POOL, with NAT), as the design document's examples expect; the warning that
        says so."""
        if NetworkMode.of(spec.network) is not None or self.store.get(spec.network):
            return ()
        for attempt in range(2):
            taken = [n.cidr for n in (*self.store.list(), self.isolated)]
            taken += self._host_prefixes
            cidr = next(
                (c for c in AUTO_POOL.subnets(new_prefix=24) if free_of(c, taken)),
                None,
            )
            if cidr is None:
                return ()  # the job is then refused as asking for a network that does not exist
            try:
                await self.create(NetworkRequest(spec.network, cidr), owner)
            except HostOverlap:
                if attempt:  # the host's networks changed between two applies: say so
                    raise
                continue  # the failed apply told us the host's networks: choose again
            return (f"network {spec.network!r} did not exist: created ({cidr}, outbound NAT)",)
        return ()

    async def remove(self, name: str, by: Principal) -> Network:
        network = self._own(name, by)
        users = sorted(self._endpoints(name))
        if users:
            shown = ", ".join(job_id[:8] for job_id in users[:10]) + (", ..." * (len(users) > 10))
            raise JobletError(
                ErrorCode.CONFLICT,
                f"network {name!r} is in use by {len(users)} live job(s): {shown}",
                hint="stop those jobs first",
            )
        self.store.remove(name)
        try:
            await self._apply()
        except BaseException:
            self.store.add(network)  # nothing half-done: it is still there, and still recorded
            raise
        self.files.remove_network(name)
        logger.info("removed network %s", name)
        return network

    # -- jobs ---------------------------------------------------------------------------

    async def plan(self, job_id: str, spec: JobSpec, by: Principal) -> tuple[JobSpec, JobNetwork]:
        """The job's network, with its egress names resolved and (on a network) an address
        reserved for it, and its hostname in the network's hosts file, if `by` (its owner) may
        join it so. Call release() if the job does not start after all."""
        mode = NetworkMode.of(spec.network)
        if mode is NetworkMode.NONE:
            return spec, NO_NETWORK
        if mode is NetworkMode.HOST:
            return spec, JobNetwork(mode=NetworkMode.HOST)
        network = self.isolated if mode is NetworkMode.ISOLATED else self.get(spec.network)
        network.shared.require(by, Need.USE if spec.name else Need.USE_LIMITED, field="network")
        egress = await self._resolved(spec.allow_egress)
        spec = dataclasses.replace(spec, allow_egress=egress)
        if mode is NetworkMode.ISOLATED and (
            not self._isolated_ready or ISOLATED in self._left_out  # the host may have changed
        ):
            self._write_files(network)
            await self._apply(with_isolated=True, making=ISOLATED)
        elif network.name in self._left_out:  # its bridge was never made: say why
            raise self._left_out[network.name]
        # From here to the reservation, no await: two jobs never get one address.
        endpoint = self._allocate(job_id, network, spec.name)
        self._write_hosts(network)
        return spec, JobNetwork(
            mode=mode,
            network=network,
            endpoint=endpoint,
            egress=egress,
            files=self.files.directory(network),
        )

    def write_job_files(self, paths: JobPaths, net: JobNetwork) -> None:
        """What the job's network helper unit reads, in the job's root-only directory on the
        host, which the job itself never sees."""
        self.files.write_job_files(paths, setup_files(net))

    def release(self, job_id: str) -> None:
        """The job did not start, or ended: its address and hostname are free again."""
        endpoint = self._reserved.pop(job_id, None)
        if endpoint is not None:
            self._rewrite_hosts(endpoint.network)

    def job_ended(self, record: JobRecord) -> None:
        if record.endpoint is not None:
            self._reserved.pop(record.id, None)
            self._rewrite_hosts(record.endpoint.network)

    async def reconcile(self) -> None:
        """At start-up: hosts files from the live jobs, and the host made to match (bridges of
        removed networks and links of jobs that ended while no agent watched are removed)."""
        live_isolated = any(
            r.endpoint and r.endpoint.network == ISOLATED for r in self.jobs.list(states=_LIVE)
        )
        networks = self.store.list()
        for network in networks:
            self._write_files(network)
        if live_isolated:
            self._write_files(self.isolated)
        if networks or live_isolated or self.files.has_state():
            try:
                await self._apply(with_isolated=live_isolated)
            except JobletError as exc:
                # Jobs without a network still run; network jobs fail to start, saying why.
                logger.error("could not set up the host's side of the networks: %s", exc.message)

    # -- PID 1 --------------------------------------------------------------------------

    async def _apply(self, *, with_isolated: bool | None = None, making: str = "") -> None:
        """Make the host's side match the records, through a short privileged unit. A network
        whose CIDR overlaps the host's own addresses or routes is left out by it: an error if
        it is the one being `making`, logged otherwise (the host changed under it: a VPN came
        up, say; its jobs are refused saying so)."""
        assert self.systemd is not None, "attach() a systemd manager first"
        async with self._lock:
            if with_isolated is not None:
                self._isolated_ready = with_isolated
            networks = tuple(self.store.list()) + ((self.isolated,) if self._isolated_ready else ())
            links = {r.endpoint.link for r in self.jobs.list(states=_LIVE) if r.endpoint}
            links |= {e.link for e in self._reserved.values()}
            state = HostState(
                networks,
                frozenset(links),
                self.files.forwarding_marker,
                allow_private=self.config.allow_private,
                nameservers=nameservers(job_resolv_conf(self.files.host_resolv_conf())),
            )
            state_file = self.files.write_state(state)
            unit = f"{NET_UNIT_PREFIX}apply-{uuid.uuid4().hex[:12]}.service"
            properties = apply_unit_properties(self._python, str(state_file), self.config.slice)
            result = await self.systemd.run(unit, properties, within=APPLY_TIMEOUT_SEC)
            self._left_out = self._read_report()
            if making in self._left_out:
                raise self._left_out[making]
            for name, overlap in self._left_out.items():
                logger.error("network %s left out: %s", name, overlap.message)
            if result != "done":
                raise JobletError(
                    ErrorCode.SYSTEMD,
                    f"setting up the host's side of the networks failed ({result})",
                    hint=f"journalctl -u {unit} says why",
                )
            logger.debug("host networks applied: %s", [n.name for n in networks])

    def _read_report(self) -> dict[str, HostOverlap]:
        """What the apply found on the host: its own networks (remembered), and the job
        networks it did not make because they overlap them (review M8), as errors."""
        report = self.files.read_report() or {}
        prefixes = []
        for text in report.get("host", ()):
            try:
                prefixes.append(ipaddress.IPv4Network(str(text)))
            except ValueError:
                continue
        self._host_prefixes = tuple(prefixes)
        overlaps = {}
        for conflict in report.get("conflicts", ()):
            name, cidr, host = (str(conflict.get(k)) for k in ("network", "cidr", "host"))
            if name == ISOLATED:
                message = (
                    f"the isolated network ({cidr}, networks.isolated_cidr in joblet.yml) "
                    f"overlaps the host's {host}"
                )
                hint = "give networks.isolated_cidr a range the host does not use"
            else:
                message = f"cidr: {cidr!r} overlaps the host's {host} (network {name!r})"
                hint = "choose a range the host has no address or route in"
            overlaps[name] = HostOverlap(ErrorCode.INVALID, message, hint=hint)
        return overlaps

    # -- helpers ------------------------------------------------------------------------

    async def _resolved(self, rules: Iterable[EgressRule]) -> tuple[EgressRule, ...]:
        out = []
        for index, rule in enumerate(rules):
            if not rule.addresses:
                try:
                    addresses = await self._resolve(rule.host)
                except OSError as exc:
                    raise JobletError(
                        ErrorCode.INVALID,
                        f"allow_egress[{index}]: {rule.target!r} is not valid; {rule.host!r} "
                        f"does not resolve on the agent's host ({exc})",
                        hint="give an IPv4 address instead of the name",
                    ) from exc
                if not addresses:
                    raise JobletError(
                        ErrorCode.INVALID,
                        f"allow_egress[{index}]: {rule.host!r} has no IPv4 address",
                    )
                out.append(dataclasses.replace(rule, addresses=addresses))
            else:
                out.append(rule)
        return tuple(out)

    def _endpoints(self, network: str) -> dict[str, Endpoint]:
        """job id -> endpoint of every live or reserved job on the network."""
        found = {
            r.id: r.endpoint
            for r in self.jobs.list(states=_LIVE)
            if r.endpoint and r.endpoint.network == network
        }
        found.update({j: e for j, e in self._reserved.items() if e.network == network})
        return found

    def _allocate(self, job_id: str, network: Network, name: str | None) -> Endpoint:
        taken = self._endpoints(network.name).values()
        hostname = name or default_hostname(job_id)
        link = link_name(job_id)
        for other in taken:
            if other.hostname == hostname:
                raise JobletError(
                    ErrorCode.CONFLICT,
                    f"name: {hostname!r} is taken on network {network.name!r} by a live job",
                    hint="choose another --name",
                )
            if other.link == link:  # two live job ids sharing 12 hex digits: retry the submit
                raise JobletError(ErrorCode.CONFLICT, "job id collision; submit again")
        if network.name == ISOLATED:
            cursor = self._isolated_cursor
        else:
            cursor = self.store.cursor(network.name)
        address, cursor = allocate_address(network, {e.address for e in taken}, cursor)
        if network.name == ISOLATED:
            self._isolated_cursor = cursor
        else:
            self.store.set_cursor(network.name, cursor)
        endpoint = Endpoint(network=network.name, address=address, hostname=hostname, link=link)
        self._reserved[job_id] = endpoint
        return endpoint

    def _write_files(self, network: Network) -> None:
        resolv = job_resolv_conf(self.files.host_resolv_conf()) if network.nat else ""
        self.files.write_network(network, resolv)
        self._write_hosts(network)

    def _write_hosts(self, network: Network) -> None:
        # Jobs on the isolated network cannot reach each other, nor learn of each other.
        peers = [] if network.isolated_ports else self._endpoints(network.name).values()
        self.files.write_hosts(network, hosts_file(peers))

    def _rewrite_hosts(self, name: str) -> None:
        network = self.isolated if name == ISOLATED else self.store.get(name)
        if network is not None:
            self._write_hosts(network)
