"""Runtimes as the agent answers about them (docs/openapi.yaml: RuntimeList, Runtime, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from rnx.client.fields import Fields, Model


@dataclass(frozen=True, slots=True)
class RuntimeSummary(Model):
    name: str
    language: str
    version: str  # the language's, e.g. "3.11"
    release: str  # the runtime's own (NAME@RELEASE, registries)
    description: str
    architectures: tuple[str, ...]  # Debian names; empty is any
    relax: tuple[str, ...]  # isolation relaxations every job of it gets
    sha256: str | None  # of the archive it was installed from

    @classmethod
    def read(cls, fields: Fields) -> RuntimeSummary:
        return cls(
            name=fields.text("name"),
            language=fields.text("language"),
            version=fields.text("version"),
            release=fields.text("release"),
            description=fields.text("description"),
            architectures=fields.texts("architectures"),
            relax=fields.texts("relax"),
            sha256=fields.opt_text("sha256"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class RuntimeList(Model):
    architecture: str  # the agent host's, as Debian names it (amd64, arm64, ...)
    runtimes: tuple[RuntimeSummary, ...]

    @classmethod
    def read(cls, fields: Fields) -> RuntimeList:
        return cls(
            architecture=fields.text("architecture"),
            runtimes=tuple(RuntimeSummary.read(r) for r in fields.objs("runtimes")),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class RuntimeMount(Model):
    source: str  # in the runtime's directory
    target: str  # in the job
    readonly: bool
    selective: tuple[str, ...] | None  # only these entries of source

    @classmethod
    def read(cls, fields: Fields) -> RuntimeMount:
        return cls(
            source=fields.text("source"),
            target=fields.text("target"),
            readonly=fields.flag("readonly"),
            selective=fields.opt_texts("selective"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class RuntimeRequirements(Model):
    min_memory: int | None  # bytes
    recommended_memory: int | None

    @classmethod
    def read(cls, fields: Fields) -> RuntimeRequirements:
        return cls(
            min_memory=fields.opt_whole("min_memory"),
            recommended_memory=fields.opt_whole("recommended_memory"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class RuntimeSource(Model):
    """Where an installed runtime's archive came from, as the installing client said; fields
    it did not send, or an older agent did not record, are None."""

    registry: str | None
    archive: str | None
    insecure: bool  # fetched over plain http (--insecure-http)
    installed_by: str | None
    installed_at: datetime | None

    @classmethod
    def read(cls, fields: Fields) -> RuntimeSource:
        return cls(
            registry=fields.opt_text("registry"),
            archive=fields.opt_text("archive"),
            insecure=fields.flag("insecure"),
            installed_by=fields.opt_text("installed_by"),
            installed_at=fields.opt_moment("installed_at"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class Runtime(Model):
    """A runtime.yml as the agent reads it (docs/runtimes.md); `rnx runtime info`'s answer adds
    where it is installed (directory), the live jobs using it, and where it came from."""

    name: str
    language: str
    version: str
    release: str
    type: str
    description: str
    architectures: tuple[str, ...]
    mounts: tuple[RuntimeMount, ...]
    environment: Mapping[str, str]
    path_prepend: tuple[str, ...]
    requirements: RuntimeRequirements
    relax: tuple[str, ...]
    packages: tuple[str, ...]
    smoke_test: tuple[str, ...]
    sha256: str | None = None  # of the archive it was installed from
    source: RuntimeSource | None = None
    directory: str | None = None  # info only
    jobs: tuple[str, ...] = ()  # info only: ids of the live jobs using it

    @classmethod
    def read(cls, fields: Fields) -> Runtime:
        source = fields.opt_obj("source", None)
        return cls(
            name=fields.text("name"),
            language=fields.text("language"),
            version=fields.text("version"),
            release=fields.text("release"),
            type=fields.text("type"),
            description=fields.text("description"),
            architectures=fields.texts("architectures"),
            mounts=tuple(RuntimeMount.read(m) for m in fields.objs("mounts")),
            environment=fields.text_map("environment"),
            path_prepend=fields.texts("path_prepend"),
            requirements=RuntimeRequirements.read(fields.obj("requirements")),
            relax=fields.texts("relax"),
            packages=fields.texts("packages"),
            smoke_test=fields.texts("smoke_test"),
            sha256=fields.opt_text("sha256", None),
            source=None if source is None else RuntimeSource.read(source),
            directory=fields.opt_text("directory", None),
            jobs=fields.texts("jobs", ()),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class RuntimeRemoved(Model):
    removed: str  # the runtime's name
    release: str

    @classmethod
    def read(cls, fields: Fields) -> RuntimeRemoved:
        return cls(removed=fields.text("removed"), release=fields.text("release"), raw=fields.data)


@dataclass(frozen=True, slots=True)
class RuntimeValidation(Model):
    """A runtime.yml the agent found valid, as it reads it."""

    valid: bool
    runtime: Runtime

    @classmethod
    def read(cls, fields: Fields) -> RuntimeValidation:
        return cls(
            valid=fields.flag("valid"),
            runtime=Runtime.read(fields.obj("runtime")),
            raw=fields.data,
        )
