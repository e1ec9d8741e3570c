"""Whom a volume or a network is shared with (docs/openapi.yaml: Share)."""

from __future__ import annotations

from dataclasses import dataclass

from rnx.client.fields import Fields, Model


@dataclass(frozen=True, slots=True)
class Share(Model):
    owner: str  # cert:NAME (a certificate) or unix:NAME (a local user)
    read_only: bool  # a volume only as NAME:ro; a network without names of one's choice

    @classmethod
    def read(cls, fields: Fields) -> Share:
        return cls(owner=fields.text("owner"), read_only=fields.flag("read_only"), raw=fields.data)
