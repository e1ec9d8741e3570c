"""Volumes as the agent answers about them (docs/openapi.yaml: Volume)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rnx.client.fields import Fields, Model
from rnx.client.share import Share


@dataclass(frozen=True, slots=True)
class Volume(Model):
    name: str
    type: str  # filesystem or memory
    size_bytes: int
    used_bytes: int | None  # as its mounted filesystem counts it; None when not mounted
    created_at: datetime
    created_by: str
    jobs: tuple[str, ...]  # ids of the live jobs naming it
    mounted: bool
    persistent: bool  # False for memory volumes, whose contents a reboot loses
    slot: int  # its group's place in the agent's range (group joblet-v<slot>)
    owner: str = ""  # cert:NAME or unix:NAME; "" from an agent before owners
    shares: tuple[Share, ...] = ()  # whom its owner shared it with

    @classmethod
    def read(cls, fields: Fields) -> Volume:
        return cls(
            name=fields.text("name"),
            type=fields.text("type"),
            size_bytes=fields.whole("size_bytes"),
            used_bytes=fields.opt_whole("used_bytes"),
            created_at=fields.moment("created_at"),
            created_by=fields.text("created_by"),
            jobs=fields.texts("jobs"),
            mounted=fields.flag("mounted"),
            persistent=fields.flag("persistent"),
            slot=fields.whole("slot"),
            owner=fields.text("owner", ""),
            shares=tuple(Share.read(s) for s in fields.objs("shares", [])),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class VolumeRemoved(Model):
    deleted: str  # the volume's name

    @classmethod
    def read(cls, fields: Fields) -> VolumeRemoved:
        return cls(deleted=fields.text("deleted"), raw=fields.data)
