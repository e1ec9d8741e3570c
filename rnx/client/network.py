"""Networks as the agent answers about them (docs/openapi.yaml: Network, AttachedJob)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rnx.client.fields import Fields, Model
from rnx.client.share import Share


@dataclass(frozen=True, slots=True)
class AttachedJob(Model):
    """A live job on a network."""

    id: str
    name: str | None
    network: str
    address: str
    hostname: str
    link: str  # the host end of its veth pair

    @classmethod
    def read(cls, fields: Fields) -> AttachedJob:
        return cls(
            id=fields.text("id"),
            name=fields.opt_text("name"),
            network=fields.text("network"),
            address=fields.text("address"),
            hostname=fields.text("hostname"),
            link=fields.text("link"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class Network(Model):
    name: str
    cidr: str
    internal: bool  # no NAT: its jobs reach only each other
    bridge: str  # the host's bridge of this network
    gateway: str | None  # the bridge's address; None for internal networks
    created_by: str | None
    created_at: datetime | None
    jobs: tuple[AttachedJob, ...]
    owner: str = ""  # cert:NAME or unix:NAME; "" from an agent before owners
    shares: tuple[Share, ...] = ()  # whom its owner shared it with

    @classmethod
    def read(cls, fields: Fields) -> Network:
        return cls(
            name=fields.text("name"),
            cidr=fields.text("cidr"),
            internal=fields.flag("internal"),
            bridge=fields.text("bridge"),
            gateway=fields.opt_text("gateway"),
            created_by=fields.opt_text("created_by"),
            created_at=fields.opt_moment("created_at"),
            jobs=tuple(AttachedJob.read(j) for j in fields.objs("jobs")),
            owner=fields.text("owner", ""),
            shares=tuple(Share.read(s) for s in fields.objs("shares", [])),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class NetworkRemoved(Model):
    removed: str  # the network's name

    @classmethod
    def read(cls, fields: Fields) -> NetworkRemoved:
        return cls(removed=fields.text("removed"), raw=fields.data)
