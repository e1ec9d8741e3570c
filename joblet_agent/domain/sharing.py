"""Volumes and networks: their owner, whom they are shared with, and what that lets one do.
Pure: no I/O.

The owner (the creator) and maintainers and admins may do anything with it; someone it is
shared with may see it and use it (mount a volume, join a network), and with a read-only share
(`--ro`) only mount it read-only, or join without taking a name; anyone else may not even see
it. Sharing and removing are its owner's (and maintainers' and admins'): a share lends use,
never management.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from joblet_agent.domain.fields import Fields
from joblet_agent.domain.owner import parse_owner
from joblet_agent.errors import ErrorCode, JobletError

MAX_SHARES = 64  # of one volume or network


@dataclass(frozen=True, slots=True)
class Share:
    owner: str  # cert:NAME or unix:NAME (domain/owner.py)
    read_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"owner": self.owner, "read_only": self.read_only}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Share:
        return cls(owner=str(data["owner"]), read_only=bool(data["read_only"]))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks: an owner, and whether their role manages everyone's (maintainer, admin)."""

    owner: str
    manages_all: bool = False


class Need(enum.Enum):
    SEE = "see"  # list, show
    USE_LIMITED = "use read-only"  # mount read-only; join a network under the default name
    USE = "use"  # mount read-write; join a network under a name of one's choice
    MANAGE = "manage"  # share, unshare, remove


@dataclass(frozen=True, slots=True)
class Shared:
    """A volume or a network as far as access goes."""

    kind: str  # "volume", "network"
    name: str
    owner: str
    shares: tuple[Share, ...]
    public: bool = False  # everyone's to see and use (the built-in isolated network)

    def share_of(self, who: str) -> Share | None:
        return next((s for s in self.shares if s.owner == who), None)

    def allows(self, by: Principal, need: Need) -> bool:
        if by.manages_all or by.owner == self.owner:
            return True
        if self.public:
            return need is not Need.MANAGE
        share = self.share_of(by.owner)
        if share is None or need is Need.MANAGE:
            return False
        return need is not Need.USE or not share.read_only

    def require(self, by: Principal, need: Need, *, field: str = "") -> None:
        """Raise FORBIDDEN, saying why and what to do, unless `by` may do `need` with it."""
        if self.allows(by, need):
            return
        at, who = f"{field}: " if field else "", by.owner
        share = self.share_of(who)
        command = "volume" if self.kind == "volume" else "network"
        if share is None:
            raise JobletError(
                ErrorCode.FORBIDDEN,
                f"{at}{self.kind} {self.name!r} belongs to {self.owner} and is not shared with "
                f"{who}",
                hint=f"its owner may share it: rnx {command} share {self.name} --with {who}",
            )
        if need is Need.MANAGE:
            raise JobletError(
                ErrorCode.FORBIDDEN,
                f"{at}{self.kind} {self.name!r} belongs to {self.owner}: a share lends its use, "
                "not its management",
            )
        if self.kind == "volume":
            raise JobletError(
                ErrorCode.FORBIDDEN,
                f"{at}volume {self.name!r} is shared with {who} read-only",
                hint=f"mount it read-only: --volume={self.name}:ro",
            )
        raise JobletError(
            ErrorCode.FORBIDDEN,
            f"name: network {self.name!r} is shared with {who} without names (--ro): a job "
            "there keeps its default hostname, job-<first 8 characters of its id>",
            hint="run it without --name, or ask the network's owner for a share with names",
        )


def shared_with(shares: tuple[Share, ...], share: Share) -> tuple[Share, ...]:
    """The shares with `share` added, or changed if its owner already had one."""
    kept = tuple(s for s in shares if s.owner != share.owner)
    if len(kept) >= MAX_SHARES:
        raise JobletError(
            ErrorCode.TOO_MANY,
            f"with: it is shared with {len(kept)} owners already; at most {MAX_SHARES}",
        )
    return (*kept, share)


def unshared(shares: tuple[Share, ...], owner: str, *, what: str) -> tuple[Share, ...]:
    kept = tuple(s for s in shares if s.owner != owner)
    if len(kept) == len(shares):
        raise JobletError(ErrorCode.NOT_FOUND, f"{what} is not shared with {owner}")
    return kept


def shares_from(data: Iterable[Mapping[str, Any]]) -> tuple[Share, ...]:
    return tuple(Share.from_dict(s) for s in data)


def parse_share(owner: str, body: object, *, namespace: str) -> Share:
    """A share request: the owner from the path (NAME in the caller's own namespace, or
    cert:NAME, unix:NAME) and the body {"read_only": bool}."""
    top = Fields(body, "")
    read_only = top.boolean("read_only", False)
    top.reject_unknown()
    return Share(parse_owner("with", owner, namespace=namespace), read_only=read_only)
