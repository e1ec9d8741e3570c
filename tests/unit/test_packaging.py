"""packaging/debian stays true to the code: dependencies, and the default configuration file."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import yaml

from joblet_agent.domain.config import AgentConfig, parse_config

REPO = Path(__file__).resolve().parents[2]
DEBIAN = REPO / "packaging/debian"
# PyPI name -> Debian package, where Debian does not simply say python3-<name>.
DEBIAN_NAMES = {"pyyaml": "python3-yaml"}
# Import name -> PyPI name, where they differ.
DISTRIBUTIONS = {"yaml": "pyyaml", "dbus_next": "dbus-next"}


def debian_name(requirement: str) -> str:
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
    return DEBIAN_NAMES.get(name, f"python3-{name}")


def relations(package: str, field: str) -> set[str]:
    """The package names in one field of one binary package in debian/control."""
    text = (DEBIAN / "control").read_text()
    stanza = next(s for s in text.split("\n\n") if s.startswith(f"Package: {package}\n"))
    lines = [line for line in stanza.splitlines() if not line.startswith("#")]
    value, inside = [], False
    for line in lines:
        if line.startswith(f"{field}:"):
            inside = True
            value.append(line.split(":", 1)[1])
        elif inside and line.startswith(" "):
            value.append(line)
        else:
            inside = False
    names = (part.strip().split(" ")[0] for part in ",".join(value).split(","))
    return {n for n in names if n and not n.startswith("${")}


def pyproject_dependencies() -> list[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return list(data["project"]["dependencies"])


def test_the_agent_package_depends_on_every_runtime_dependency() -> None:
    depends = relations("joblet", "Depends")
    missing = [d for d in pyproject_dependencies() if debian_name(d) not in depends]
    assert not missing, f"add to joblet's Depends in packaging/debian/control: {missing}"


def test_every_runtime_dependency_is_pinned_to_its_bookworm_version() -> None:
    pins = (DEBIAN / "bookworm-versions.txt").read_text().lower()
    pinned = {line.split("==")[0].strip() for line in pins.splitlines() if "==" in line}
    for requirement in pyproject_dependencies():
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
        assert name in pinned, f"{name}: add its bookworm version to bookworm-versions.txt"


def test_the_rnx_package_depends_on_what_rnx_imports() -> None:
    """rnx installs without the agent, so its own package must bring every library it imports
    (cryptography is optional: rnx only uses it for clearer TLS errors)."""
    first_party = {"rnx", "joblet_agent"}
    imported: set[str] = set()
    for path in (REPO / "rnx").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    runtime = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower() for d in pyproject_dependencies()}
    third_party = {DISTRIBUTIONS.get(m, m) for m in imported - first_party} & runtime
    assert "joblet_agent" not in imported, "rnx must not import the agent"
    offered = relations("rnx", "Depends") | relations("rnx", "Recommends")
    missing = sorted(n for n in third_party if debian_name(n) not in offered)
    assert not missing, f"add to rnx's Depends in packaging/debian/control: {missing}"


def test_one_version_everywhere() -> None:
    """rnx --version and /v1/health say the packages' version (debian/changelog's)."""
    import joblet_agent
    import rnx

    changelog = (DEBIAN / "changelog").read_text().split("\n", 1)[0]
    debian = changelog.split("(", 1)[1].split(")", 1)[0]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert rnx.__version__ == joblet_agent.__version__ == project == debian


def test_the_shipped_joblet_yml_shows_the_defaults() -> None:
    """/etc/joblet/joblet.yml ships every key commented out; uncommented, it must change nothing."""
    text = (DEBIAN / "joblet.yml").read_text()
    assert yaml.safe_load(text) is None  # as shipped: all comments, so every default applies
    uncommented = "\n".join(
        line[1:] for line in text.splitlines() if line.startswith("#") and not line.startswith("# ")
    )
    assert parse_config(yaml.safe_load(uncommented), "joblet.yml") == AgentConfig()
