"""docs/architecture.md's "one place per side effect", checked: each binding to the outside world
(D-Bus, SQLite, child processes, tar, X.509, HTTP, atomic renames) is used by the modules its table
names and by no other. The layers themselves are import-linter's contracts (pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "joblet_agent"

# binding -> the modules (relative to joblet_agent/) that are its one place; "dir/" is a package.
ONE_PLACE: dict[str, frozenset[str]] = {
    "dbus_next": frozenset({"adapters/systemd_dbus.py"}),
    "pystemd": frozenset({"daemon.py"}),
    "sqlite3": frozenset(
        {
            "adapters/job_store.py",
            "adapters/network_store.py",
            "adapters/schedule_store.py",
            "adapters/sqlite_schema.py",
        }
    ),
    "subprocess": frozenset(
        {"adapters/host_probe.py", "adapters/netlink.py", "pki/names.py"}  # names: `ip -j addr`
    ),
    "asyncio.create_subprocess_exec": frozenset(
        {"adapters/ext4.py", "adapters/journal.py", "adapters/calendar.py"}
    ),
    "asyncio.create_subprocess_shell": frozenset(),
    "os.system": frozenset(),
    "tarfile": frozenset(
        {"adapters/archive.py", "adapters/archive_stream.py", "adapters/archive_out.py"}
    ),
    "cryptography": frozenset({"pki/", "api/tls.py"}),
    "aiohttp": frozenset({"api/", "daemon.py"}),
    "ssl": frozenset({"api/"}),
    # One write_atomic (files.py); runtimes are installed by renaming a whole directory.
    "os.replace": frozenset({"files.py"}),
    # pki/store.py: a CA key of an older layout moves into ca/, out of the agent's sight.
    "os.rename": frozenset({"adapters/runtime_store.py", "pki/store.py"}),
    "shutil.rmtree": frozenset({"adapters/job_root.py"}),  # trees from outside: trees.py
}


def used_bindings(source: str) -> dict[str, int]:
    """Every binding of ONE_PLACE a module's source imports or calls, with a line it does so."""
    found: dict[str, int] = {}

    def note(name: str, line: int) -> None:
        for binding in ONE_PLACE:
            if name == binding or name.startswith(binding + "."):
                found.setdefault(binding, line)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                note(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            note(node.module, node.lineno)
            for alias in node.names:
                note(f"{node.module}.{alias.name}", node.lineno)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            note(f"{node.value.id}.{node.attr}", node.lineno)
    return found


def _allowed(module: str, places: frozenset[str]) -> bool:
    return any(module == p or (p.endswith("/") and module.startswith(p)) for p in places)


def test_the_scanner_sees_imports_from_imports_and_calls() -> None:
    source = (
        "import dbus_next.aio\n"
        "from sqlite3 import connect\n"
        "import os\n"
        "os.replace('a', 'b')\n"
        "await asyncio.create_subprocess_exec('x')\n"
    )
    assert used_bindings(source) == {
        "dbus_next": 1,
        "sqlite3": 2,
        "os.replace": 4,
        "asyncio.create_subprocess_exec": 5,
    }
    assert used_bindings("from joblet_agent.files import write_atomic\nx.replace('a', 'b')\n") == {}


@pytest.mark.parametrize("binding", sorted(ONE_PLACE))
def test_each_side_effect_has_one_place(binding: str) -> None:
    strays = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        line = used_bindings(path.read_text()).get(binding)
        if line is not None and not _allowed(module, ONE_PLACE[binding]):
            strays.append(f"joblet_agent/{module}:{line}")
    assert not strays, (
        f"{binding} is used outside its place ({', '.join(sorted(ONE_PLACE[binding])) or 'none'}):"
        f" {strays}; move the I/O behind a port (docs/architecture.md)"
    )


@pytest.mark.parametrize("binding", sorted(b for b, places in ONE_PLACE.items() if places))
def test_each_place_named_still_uses_its_binding(binding: str) -> None:
    """The table stays true: a place that no longer uses its binding is removed from it."""
    for place in ONE_PLACE[binding]:
        paths = (
            sorted((PACKAGE / place).rglob("*.py")) if place.endswith("/") else [PACKAGE / place]
        )
        assert any(binding in used_bindings(p.read_text()) for p in paths), (binding, place)


def test_every_port_has_a_fake_that_mypy_fits_to_it() -> None:
    """fakes.py's TYPE_CHECKING tuple pairs each port with its fake, and mypy checks the fit;
    this checks that no port of ports.py is missing from that tuple."""
    ports_source = (PACKAGE / "ports.py").read_text()
    protocols = {
        node.name
        for node in ast.parse(ports_source).body
        if isinstance(node, ast.ClassDef)
        and any(isinstance(b, ast.Name) and b.id == "Protocol" for b in node.bases)
    }
    aliases = {
        node.targets[0].id
        for node in ast.parse(ports_source).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id[0].isupper()
    }
    fakes_source = (Path(__file__).parent / "fakes.py").read_text()
    fitted = {
        node.attr
        for node in ast.walk(ast.parse(fakes_source))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "ports"
    }
    assert protocols, "no Protocol found in ports.py"
    assert not (protocols | aliases) - fitted, "ports without a fake checked in fakes.py"
