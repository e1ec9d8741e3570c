# ruff: noqa: E501  (the table of refusals reads best one per line)
"""runtime.yml: every field, its default, and every refusal with the place it names."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from joblet_agent.domain.runtime import Mount, Requirements, load_runtime_yml, parse_runtime
from joblet_agent.errors import ErrorCode, JobletError

DESIGN_DOCUMENT = """
name: "python-3.11-ml"
type: "system"
version: "3.11"
description: "Python 3.11 with ML packages"

mounts:
  - source: "bin"
    target: "/usr/local/bin"
    readonly: true
    selective: [ "python", "python3", "pip" ]
  - source: "ml-venv/lib/python3.11/site-packages"
    target: "/usr/local/lib/python3.11/site-packages"
    readonly: true

environment:
  PYTHON_HOME: "/usr/local"
  PYTHONPATH: "/usr/local/lib/python3.11/site-packages"
  PATH_PREPEND: "/usr/local/bin"

requirements:
  min_memory: "512MB"
  recommended_memory: "2GB"
"""
RECIPES = Path(__file__).parents[2] / "runtimes"


def test_the_design_documents_example_is_valid() -> None:
    spec = load_runtime_yml(DESIGN_DOCUMENT)
    assert (spec.name, spec.type, spec.version, spec.language) == (
        "python-3.11-ml",
        "system",
        "3.11",
        "python",
    )
    assert spec.mounts == (
        Mount("bin", "/usr/local/bin", True, ("python", "python3", "pip")),
        Mount("ml-venv/lib/python3.11/site-packages", "/usr/local/lib/python3.11/site-packages"),
    )
    # PATH_PREPEND is not a variable: it goes in front of the job's PATH.
    assert dict(spec.environment) == {
        "PYTHON_HOME": "/usr/local",
        "PYTHONPATH": "/usr/local/lib/python3.11/site-packages",
    }
    assert spec.path_prepend == ("/usr/local/bin",)
    assert spec.requirements == Requirements(512 * 2**20, 2 * 2**30)


def test_defaults_of_a_minimal_runtime() -> None:
    spec = parse_runtime({"name": "node-18", "version": "18"})
    assert spec.language == "node"
    assert (spec.release, spec.type, spec.description) == ("1.0.0", "system", "")
    assert spec.mounts == ()
    assert spec.architectures == spec.relax == spec.packages == ()
    assert spec.smoke_test == spec.path_prepend == ()
    assert spec.requirements == Requirements()


def test_every_optional_field() -> None:
    spec = parse_runtime(
        {
            "name": "java-21",
            "language": "jvm",
            "version": "21",
            "release": "2.0.1+deb13",
            "architectures": ["amd64", "arm64"],
            "mounts": [{"source": "./cache/", "target": "/opt/java/cache", "readonly": False}],
            "environment": {"PATH_PREPEND": "/opt/a:/opt/b"},
            "relax": ["wx-memory"],
            "packages": ["deb:openjdk-21-jdk-headless 21.0.5"],
            "smoke_test": ["java", "-version"],
        }
    )
    assert spec.language == "jvm" and spec.release == "2.0.1+deb13"
    assert spec.architectures == ("amd64", "arm64")
    assert spec.mounts == (Mount("cache", "/opt/java/cache", False, None),)
    assert spec.path_prepend == ("/opt/a", "/opt/b")
    assert spec.relax == ("wx-memory",)
    assert spec.packages == ("deb:openjdk-21-jdk-headless 21.0.5",)
    assert spec.smoke_test == ("java", "-version")
    assert spec.to_dict()["mounts"][0] == {
        "source": "cache",
        "target": "/opt/java/cache",
        "readonly": False,
        "selective": None,
    }


@pytest.mark.parametrize("name", sorted(p.parent.name for p in RECIPES.glob("*/runtime.yml")))
def test_the_projects_recipes_are_valid(name: str) -> None:
    spec = load_runtime_yml((RECIPES / name / "runtime.yml").read_text())
    assert spec.name == name


@pytest.mark.parametrize(
    "target",
    [
        "/etc/ssl",
        "/etc/ssl/certs",
        "/etc/ca-certificates",
        "/etc/alternatives",
        "/etc/ld.so.cache",
        "/etc/java-17-openjdk",
        "/etc/maven",
        "/etc/python3",
        "/etc/python3.11",
    ],
)
def test_etc_targets_a_runtimes_own_programs_read_are_allowed(target: str) -> None:
    data = {"name": "demo", "version": "1", "mounts": [{"source": "etc", "target": target}]}
    assert parse_runtime(data).mounts[0].target == target


BASE: dict[str, Any] = {
    "name": "demo",
    "version": "1",
    "mounts": [{"source": "bin", "target": "/opt/demo/bin", "selective": ["tool"]}],
    "requirements": {"min_memory": "64M"},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    """BASE with one value replaced; path like 'mounts.0.source' (DELETE removes the key)."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value == "DELETE":
        del node[last]
    elif isinstance(node, list):
        node[int(last) : int(last) + 1] = [value]
    else:
        node[last] = value
    return data


REFUSALS = [
    ("name", "DELETE", "runtime.yml: name: missing; a string is required"),
    ("name", "Python", "runtime.yml: name: 'Python' is not valid; 1-63 of a-z"),
    ("name", "java:17", "runtime.yml: name: 'java:17' is not valid"),
    ("name", "x@1", "runtime.yml: name: 'x@1' is not valid"),
    ("name", 17, "runtime.yml: name: 17 is not valid; expected a string"),
    ("version", "DELETE", "runtime.yml: version: missing"),
    ("version", " ", "runtime.yml: version: ' ' is not valid; the language's version"),
    ("language", "Py-thon", "runtime.yml: language: 'Py-thon' is not valid; a lowercase word"),
    ("release", "1 0", "runtime.yml: release: '1 0' is not valid; a version like 1.0.2"),
    ("type", "library", "runtime.yml: type: 'library' is not valid; allowed: system"),
    ("description", ["x"], "runtime.yml: description: ['x'] is not valid; expected a string"),
    ("architectures", "amd64", "runtime.yml: architectures: 'amd64' is not valid; expected a list"),
    ("architectures", ["x86_64"], "runtime.yml: architectures[0]: 'x86_64' is not valid; allowed:"),
    (
        "architectures",
        ["amd64", "amd64"],
        "runtime.yml: architectures[1]: 'amd64' is not valid; listed",
    ),
    (
        "mounts",
        {"source": "bin"},
        "runtime.yml: mounts: {'source': 'bin'} is not valid; expected a list",
    ),
    ("mounts.0", "bin", "runtime.yml: mounts[0]: 'bin' is not valid; expected a mapping"),
    ("mounts.0.source", "DELETE", "runtime.yml: mounts[0].source: missing"),
    (
        "mounts.0.source",
        "/usr/bin",
        "runtime.yml: mounts[0].source: '/usr/bin' is not valid; relative to",
    ),
    (
        "mounts.0.source",
        "bin/../../etc",
        "runtime.yml: mounts[0].source: 'bin/../../etc' is not valid; it leaves the runtime directory",
    ),
    ("mounts.0.source", "..", "runtime.yml: mounts[0].source: '..' is not valid; it leaves"),
    ("mounts.0.source", "", "runtime.yml: mounts[0].source: '' is not valid; a path relative"),
    ("mounts.0.target", "DELETE", "runtime.yml: mounts[0].target: missing"),
    (
        "mounts.0.target",
        "opt/x",
        "runtime.yml: mounts[0].target: 'opt/x' is not valid; an absolute path",
    ),
    (
        "mounts.0.target",
        "/opt/x/../y",
        "runtime.yml: mounts[0].target: '/opt/x/../y' is not valid; a normalised",
    ),
    (
        "mounts.0.target",
        "/opt//x",
        "runtime.yml: mounts[0].target: '/opt//x' is not valid; a normalised",
    ),
    (
        "mounts.0.target",
        "/opt/x/",
        "runtime.yml: mounts[0].target: '/opt/x/' is not valid; a normalised",
    ),
    (
        "mounts.0.target",
        "/work/bin",
        "runtime.yml: mounts[0].target: '/work/bin' is not valid; under /usr, /opt or /etc",
    ),
    ("mounts.0.target", "/tmp", "runtime.yml: mounts[0].target: '/tmp' is not valid; under /usr"),
    (
        "mounts.0.target",
        "/run/.joblet",
        "runtime.yml: mounts[0].target: '/run/.joblet' is not valid",
    ),
    ("mounts.0.target", "/etc/passwd", "runtime.yml: mounts[0].target: '/etc/passwd' is not valid"),
    (
        "mounts.0.target",
        "/etc/nsswitch.conf",
        "mounts[0].target: '/etc/nsswitch.conf' is not valid",
    ),
    ("mounts.0.target", "/etc", "runtime.yml: mounts[0].target: '/etc' is not valid"),
    (
        "mounts.0.target",
        "/etc/ld.so.preload",  # a library loaded into every program the job's root runs
        "mounts[0].target: '/etc/ld.so.preload' is not valid; under /etc a runtime may provide "
        "only alternatives, ca-certificates, java-N-openjdk, ld.so.cache, maven, python3, "
        "python3.N, ssl",
    ),
    ("mounts.0.target", "/etc/ld.so.conf.d", "'/etc/ld.so.conf.d' is not valid; under /etc a"),
    ("mounts.0.target", "/etc/profile.d/x.sh", "'/etc/profile.d/x.sh' is not valid; under /etc"),
    ("mounts.0.target", "/etc/environment", "'/etc/environment' is not valid; under /etc a"),
    ("mounts.0.target", "/etc/pam.d", "'/etc/pam.d' is not valid; under /etc a runtime"),
    ("mounts.0.target", "/etc/sslx", "'/etc/sslx' is not valid; under /etc a runtime"),
    ("mounts.0.target", "/etc/python3.x", "'/etc/python3.x' is not valid; under /etc a"),
    ("mounts.0.target", "/opt", "runtime.yml: mounts[0].target: '/opt' is not valid"),
    ("mounts.0.target", "/", "runtime.yml: mounts[0].target: '/' is not valid"),
    ("mounts.0.target", "/usrx", "runtime.yml: mounts[0].target: '/usrx' is not valid"),
    (
        "mounts.0.readonly",
        "yes",
        "runtime.yml: mounts[0].readonly: 'yes' is not valid; expected true or false",
    ),
    (
        "mounts.0.selective",
        [],
        "runtime.yml: mounts[0].selective: [] is not valid; list at least one",
    ),
    (
        "mounts.0.selective",
        "tool",
        "runtime.yml: mounts[0].selective: 'tool' is not valid; expected a list",
    ),
    (
        "mounts.0.selective",
        ["a/b"],
        "runtime.yml: mounts[0].selective[0]: 'a/b' is not valid; a file or directory name",
    ),
    ("mounts.0.selective", [".."], "runtime.yml: mounts[0].selective[0]: '..' is not valid"),
    (
        "mounts.0.selective",
        ["a", "a"],
        "runtime.yml: mounts[0].selective[1]: 'a' is not valid; listed twice",
    ),
    ("mounts.0.sorce", "x", "runtime.yml: mounts[0].sorce: unknown key; known keys here:"),
    ("environment", ["A=1"], "runtime.yml: environment: ['A=1'] is not valid; expected a mapping"),
    ("environment.A", 1, "runtime.yml: environment.A: 1 is not valid; expected a string value"),
    ("environment.1A", "x", "runtime.yml: environment.1A: '1A' is not valid; names are letters"),
    (
        "environment.PATH",
        "/x",
        "runtime.yml: environment.PATH: 'PATH' is not valid; JOB_*, PATH (use PATH_PREPEND)",
    ),
    ("environment.JOB_ID", "x", "runtime.yml: environment.JOB_ID: 'JOB_ID' is not valid; JOB_*"),
    (
        "environment.LD_PRELOAD",
        "/x.so",
        "runtime.yml: environment.LD_PRELOAD: 'LD_PRELOAD' is not valid",
    ),
    (
        "environment.A",
        "a\0b",
        "runtime.yml: environment.A: 'a\\x00b' is not valid; values may not contain NUL",
    ),
    (
        "environment.PATH_PREPEND",
        "bin",
        "runtime.yml: environment.PATH_PREPEND: 'bin' is not valid; absolute directories",
    ),
    ("environment.PATH_PREPEND", "/a::/b", "environment.PATH_PREPEND: '/a::/b' is not valid"),
    ("environment.PATH_PREPEND", "/a/../b", "environment.PATH_PREPEND: '/a/../b' is not valid"),
    ("requirements", "512M", "runtime.yml: requirements: '512M' is not valid; expected a mapping"),
    (
        "requirements.min_memory",
        "lots",
        "runtime.yml: requirements.min_memory: 'lots' is not valid; a size is",
    ),
    (
        "requirements.recommended_memory",
        "32M",
        "runtime.yml: requirements.recommended_memory: 33554432 is not valid; at least min_memory",
    ),
    (
        "requirements.max_memory",
        "1G",
        "runtime.yml: requirements.max_memory: unknown key; known keys here: min_memory, recommended_memory",
    ),
    (
        "relax",
        ["no-seccomp"],
        "runtime.yml: relax[0]: 'no-seccomp' is not valid; allowed: wx-memory",
    ),
    (
        "relax",
        ["wx-memory", "wx-memory"],
        "runtime.yml: relax[1]: 'wx-memory' is not valid; listed twice",
    ),
    (
        "packages",
        "numpy",
        "runtime.yml: packages: 'numpy' is not valid; expected a list of strings",
    ),
    ("smoke_test", [], "runtime.yml: smoke_test: [] is not valid; a command and its arguments"),
    (
        "smoke_test",
        "java -version",
        "runtime.yml: smoke_test: 'java -version' is not valid; expected a list",
    ),
    ("mount", [], "runtime.yml: mount: unknown key; known keys here:"),
]


@pytest.mark.parametrize(("path", "value", "message"), REFUSALS, ids=[r[2][:60] for r in REFUSALS])
def test_refusals_name_the_place_the_value_and_what_is_allowed(
    path: str, value: Any, message: str
) -> None:
    with pytest.raises(JobletError) as refused:
        parse_runtime(_with(path, value))
    assert refused.value.code is ErrorCode.INVALID
    assert message in refused.value.message, refused.value.message


def test_duplicate_targets_are_refused() -> None:
    data = _with("mounts.1", {"source": "other", "target": "/opt/demo/bin"})
    with pytest.raises(JobletError, match=r"mounts\[1\].target: '/opt/demo/bin' is not valid; "):
        parse_runtime(data)


def test_the_whole_file_must_be_a_mapping_of_valid_yaml() -> None:
    with pytest.raises(JobletError, match=r"runtime.yml: not valid YAML"):
        load_runtime_yml("name: [unclosed")
    with pytest.raises(JobletError, match=r"runtime.yml:: .* expected a mapping"):
        load_runtime_yml("- just\n- a list\n")
    with pytest.raises(JobletError, match=r"^/opt/x/runtime.yml: name: missing"):
        load_runtime_yml(yaml.safe_dump({"version": "1"}), "/opt/x/runtime.yml")
