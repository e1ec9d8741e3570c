"""runtime.yml: what a runtime is and what it puts into a job's world. Strict, like joblet.yml.

Every refusal names the place (`runtime.yml: mounts[2].source`), the value and what is allowed;
unknown keys are refused, so a typo cannot silently drop a mount or a requirement. The schema
is documented in docs/runtimes.md.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from joblet_agent.domain.bounded_yaml import BoundedYamlError, load_yaml
from joblet_agent.domain.fields import Fields
from joblet_agent.domain.job import RELAXATIONS
from joblet_agent.domain.jobspec import RESERVED_ENV
from joblet_agent.domain.quantities import parse_size
from joblet_agent.errors import ErrorCode, JobletError

# A name is a directory name and part of `--runtime=name@release`: no '/', ':' or '@'.
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_LANGUAGE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_RELEASE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RUNTIME_TYPES = ("system",)
# Debian's names, as `dpkg --print-architecture` prints them.
ARCHITECTURES = ("amd64", "arm64", "armhf", "i386", "ppc64el", "riscv64", "s390x")
PATH_PREPEND = "PATH_PREPEND"
# Where a runtime may put things in a job's root. Not where the job writes (/work, /tmp), not
# the agent's own files in it (/run/.joblet) or the kernel's (/proc, /sys, /dev). Under /etc
# only what a runtime's own programs read: certificates, the loader's cache, alternatives
# links, a language's own configuration. Never what changes how every program starts
# (/etc/ld.so.preload, ld.so.conf, environment, profile) or who a job is (passwd, group,
# nsswitch.conf, pam.d, security, sudoers...): a runtime adds programs, nothing more.
_TARGET_ROOTS = ("/usr", "/opt", "/etc")
_ETC_ALLOWED = re.compile(
    r"^(alternatives|ca-certificates|ld\.so\.cache|ssl|maven|java-[0-9]+-openjdk|python3(\.[0-9]+)?)$"
)
_ETC_ALLOWED_TEXT = (
    "alternatives, ca-certificates, java-N-openjdk, ld.so.cache, maven, python3, python3.N, ssl"
)


@dataclass(frozen=True, slots=True)
class Mount:
    source: str  # relative to the runtime's directory, normalised, never leaving it
    target: str  # absolute, normalised, inside the job's root
    readonly: bool = True
    selective: tuple[str, ...] | None = None  # only these entries of source are visible

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "readonly": self.readonly,
            "selective": list(self.selective) if self.selective is not None else None,
        }


@dataclass(frozen=True, slots=True)
class Requirements:
    min_memory: int | None = None  # bytes; a job with a lower memory limit is refused
    recommended_memory: int | None = None  # bytes; a job with a lower limit gets a warning


def _frozen(data: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True, slots=True)
class RuntimeSpec:
    name: str
    version: str  # the language's version, e.g. "3.11"
    language: str  # the directory it lives under: /opt/joblet/runtimes/<language>/<name>
    release: str = "1.0.0"  # the runtime package's own version: `name@release`, registries
    type: str = "system"
    description: str = ""
    architectures: tuple[str, ...] = ()  # empty: any
    mounts: tuple[Mount, ...] = ()
    environment: Mapping[str, str] = field(default_factory=_frozen)  # without PATH_PREPEND
    path_prepend: tuple[str, ...] = ()
    requirements: Requirements = field(default_factory=Requirements)
    relax: tuple[str, ...] = ()  # isolation relaxations every job of this runtime gets
    packages: tuple[str, ...] = ()  # what it holds, for `rnx runtime info`
    smoke_test: tuple[str, ...] = ()  # argv of `rnx runtime test`

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "language": self.language,
            "version": self.version,
            "release": self.release,
            "type": self.type,
            "description": self.description,
            "architectures": list(self.architectures),
            "mounts": [m.to_dict() for m in self.mounts],
            "environment": dict(self.environment),
            "path_prepend": list(self.path_prepend),
            "requirements": {
                "min_memory": self.requirements.min_memory,
                "recommended_memory": self.requirements.recommended_memory,
            },
            "relax": list(self.relax),
            "packages": list(self.packages),
            "smoke_test": list(self.smoke_test),
        }


MAX_RUNTIME_YML = 256 * 1024  # characters; real ones are a few hundred


def load_runtime_yml(text: str, source: str = "runtime.yml") -> RuntimeSpec:
    if len(text) > MAX_RUNTIME_YML:
        raise JobletError(
            ErrorCode.TOO_LARGE,
            f"{source}: {len(text)} characters; a runtime.yml has at most {MAX_RUNTIME_YML}",
        )
    try:
        data = load_yaml(text)
    except BoundedYamlError as exc:
        raise JobletError(ErrorCode.INVALID, f"{source}: not valid YAML: {exc}") from None
    return parse_runtime(data, source)


def parse_runtime(data: object, source: str = "runtime.yml") -> RuntimeSpec:
    top = Fields(data, f"{source}:")
    name = top.required_string("name")
    if not NAME.match(name):
        raise top.error("name", name, "1-63 of a-z, 0-9, '.', '_', '-', starting with a-z or 0-9")
    version = top.required_string("version")
    if not version.strip():
        raise top.error("version", version, "the language's version, e.g. '3.11'")
    language = top.string("language") or default_language(name)
    if not _LANGUAGE.match(language):
        raise top.error("language", language, "a lowercase word, e.g. python, java, node")
    release = top.string("release", "1.0.0")
    assert release is not None
    if not _RELEASE.match(release):
        raise top.error("release", release, "a version like 1.0.2 (letters, digits, '.+~_-')")
    kind = top.string("type", "system")
    if kind not in RUNTIME_TYPES:
        raise top.error("type", kind, f"allowed: {', '.join(RUNTIME_TYPES)}")
    description = top.string("description", "") or ""
    architectures = _unique(top, "architectures", top.string_list("architectures"))
    for index, arch in enumerate(architectures):
        if arch not in ARCHITECTURES:
            raise top.error(f"architectures[{index}]", arch, f"allowed: {', '.join(ARCHITECTURES)}")
    mounts = _mounts(top)
    environment, prepend = _environment(top)
    requirements = _requirements(top.section("requirements"))
    relax = _unique(top, "relax", top.string_list("relax"))
    for index, item in enumerate(relax):
        if item not in RELAXATIONS:
            raise top.error(f"relax[{index}]", item, f"allowed: {', '.join(RELAXATIONS)}")
    packages = top.string_list("packages")
    smoke_test = top.string_list("smoke_test")
    if "smoke_test" in _keys(data) and not smoke_test:
        raise top.error("smoke_test", smoke_test, "a command and its arguments: [java, -version]")
    top.reject_unknown()
    return RuntimeSpec(
        name=name,
        version=version,
        language=language,
        release=release,
        type=kind,
        description=description,
        architectures=tuple(architectures),
        mounts=mounts,
        environment=_frozen(environment),
        path_prepend=prepend,
        requirements=requirements,
        relax=tuple(relax),
        packages=tuple(packages),
        smoke_test=tuple(smoke_test),
    )


def default_language(name: str) -> str:
    """python-3.11-ml -> python, java-17 -> java: the name up to its first '-'."""
    return name.split("-", 1)[0].split(".", 1)[0]


def _keys(data: object) -> set[str]:
    return set(data) if isinstance(data, Mapping) else set()


def _unique(top: Fields, key: str, items: list[str]) -> list[str]:
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item in seen:
            raise top.error(f"{key}[{index}]", item, "listed twice")
        seen.add(item)
    return items


def _mounts(top: Fields) -> tuple[Mount, ...]:
    raw = top.raw("mounts")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise top.error("mounts", raw, "expected a list of mounts (source, target, ...)")
    mounts: list[Mount] = []
    targets: set[str] = set()
    for index, item in enumerate(raw):
        entry = Fields(item, top.where(f"mounts[{index}]"))
        source = _source(entry, entry.required_string("source"))
        target = _target(entry, entry.required_string("target"))
        if target in targets:
            raise entry.error("target", target, "another mount already has this target")
        targets.add(target)
        readonly = entry.boolean("readonly", default=True)
        selective: tuple[str, ...] | None = None
        if entry.has("selective"):
            names = _unique(entry, "selective", entry.string_list("selective"))
            if not names:
                raise entry.error("selective", names, "list at least one entry of source")
            for number, name in enumerate(names):
                if not name or "/" in name or name in (".", "..") or "\0" in name:
                    raise entry.error(
                        f"selective[{number}]", name, "a file or directory name inside source"
                    )
            selective = tuple(names)
        entry.reject_unknown()
        mounts.append(Mount(source, target, readonly, selective))
    return tuple(mounts)


def _source(entry: Fields, source: str) -> str:
    if not source or "\0" in source:
        raise entry.error("source", source, "a path relative to the runtime's directory")
    if source.startswith("/"):
        raise entry.error("source", source, "relative to the runtime's directory, not absolute")
    normal = posixpath.normpath(source)
    if normal == ".." or normal.startswith("../"):
        raise entry.error("source", source, "it leaves the runtime directory")
    return normal


def _target(entry: Fields, target: str) -> str:
    if not target.startswith("/") or "\0" in target:
        raise entry.error("target", target, "an absolute path in the job's filesystem")
    parts = target.split("/")[1:]
    if any(part in ("", ".", "..") for part in parts):
        raise entry.error("target", target, "a normalised absolute path (no '.', '..', '//')")
    allowed = any(target == root or target.startswith(root + "/") for root in _TARGET_ROOTS)
    if not allowed or target in ("/etc", "/opt"):
        raise entry.error(
            "target",
            target,
            "under /usr, /opt or /etc (not /etc or /opt themselves)",
        )
    if target.startswith("/etc/") and not _ETC_ALLOWED.match(parts[1]):
        raise entry.error(
            "target",
            target,
            f"under /etc a runtime may provide only {_ETC_ALLOWED_TEXT} (and what is "
            "inside them): nothing that changes how every program starts, like "
            "/etc/ld.so.preload, or who a job is",
        )
    return target


def _environment(top: Fields) -> tuple[dict[str, str], tuple[str, ...]]:
    env = top.string_map("environment")
    prepend: tuple[str, ...] = ()
    where = "environment"
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise top.error(f"{where}.{name}", name, "names are letters, digits and '_'")
        if name.startswith("JOB_") or name in RESERVED_ENV or name == "PATH":
            raise top.error(
                f"{where}.{name}",
                name,
                "JOB_*, PATH (use PATH_PREPEND) and names set by the agent or systemd are reserved",
            )
        if "\0" in value:
            raise top.error(f"{where}.{name}", value, "values may not contain NUL bytes")
    if PATH_PREPEND in env:
        value = env.pop(PATH_PREPEND)
        dirs = tuple(value.split(":"))
        if not all(d.startswith("/") and posixpath.normpath(d) == d for d in dirs):
            raise top.error(
                f"{where}.{PATH_PREPEND}", value, "absolute directories separated by ':'"
            )
        prepend = dirs
    return env, prepend


def _requirements(section: Fields) -> Requirements:
    minimum = section.parsed("min_memory", parse_size)
    recommended = section.parsed("recommended_memory", parse_size)
    if minimum is not None and recommended is not None and recommended < minimum:
        raise section.error(
            "recommended_memory", recommended, f"at least min_memory ({minimum} bytes)"
        )
    section.reject_unknown()
    return Requirements(min_memory=minimum, recommended_memory=recommended)
