"""rnx-config.yml: which agent rnx talks to, and a clear error (code "config", exit 9) naming
the file, the key and the reason for every bad configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnx import config
from rnx.config import Target, load_nodes, resolve_target
from rnx.errors import RnxError


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home without ~/.rnx, no RNX_CONFIG, and no local agent."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RNX_CONFIG", raising=False)
    monkeypatch.setattr(config, "DEFAULT_SOCKET", str(tmp_path / "no-agent.sock"))
    return tmp_path / "home"


def tls_files(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("client.crt", "client.key", "ca.crt"):
        (directory / name).write_text("pem")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


TWO_NODES = """\
default: web1
nodes:
  web1:
    address: "web1.example.com:50051"
    cert: client.crt
    key: client.key
    ca: ca.crt
  local:
    socket: /run/joblet/joblet.sock
"""


def refused(match: str, **where: str | None) -> RnxError:
    arguments: dict[str, str | None] = {"config_path": None, "node": None, "socket_path": None}
    arguments.update(where)
    with pytest.raises(RnxError, match=match) as info:
        resolve_target(**arguments)
    assert info.value.code == "config"
    return info.value


def test_the_default_node_of_the_home_config_with_paths_relative_to_the_file(home: Path) -> None:
    tls_files(home / ".rnx")
    write(home / ".rnx" / "rnx-config.yml", TWO_NODES)
    target = resolve_target(config_path=None, node=None, socket_path=None)
    assert target == Target(
        name="web1",
        address="web1.example.com:50051",
        cert=home / ".rnx" / "client.crt",
        key=home / ".rnx" / "client.key",
        ca=home / ".rnx" / "ca.crt",
    )
    assert target.describe() == "web1.example.com:50051"


def test_node_picks_another_and_socket_wins_over_everything(home: Path) -> None:
    tls_files(home / ".rnx")
    write(home / ".rnx" / "rnx-config.yml", TWO_NODES)
    local = resolve_target(config_path=None, node="local", socket_path=None)
    assert local == Target(name="local", socket="/run/joblet/joblet.sock")
    assert local.describe() == "unix:/run/joblet/joblet.sock"
    chosen = resolve_target(config_path=None, node="web1", socket_path="/tmp/a.sock")
    assert chosen == Target(name="local", socket="/tmp/a.sock")


def test_rnx_config_in_the_environment_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "elsewhere.yml", "nodes:\n  only:\n    socket: /s.sock\n")
    monkeypatch.setenv("RNX_CONFIG", str(path))
    assert resolve_target(config_path=None, node=None, socket_path=None).socket == "/s.sock"


def test_without_a_config_the_local_agent_or_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = refused(r"no ~/\.rnx/rnx-config\.yml and no local agent at .*no-agent\.sock")
    assert "joblet-agent pki client" in error.message
    agent = write(tmp_path / "agent.sock", "")
    monkeypatch.setattr(config, "DEFAULT_SOCKET", str(agent))
    assert resolve_target(config_path=None, node=None, socket_path=None).socket == str(agent)
    refused(r"^--node web1: there is no .*rnx-config\.yml to find it in$", node="web1")


def test_a_config_named_but_missing(tmp_path: Path) -> None:
    refused(r"^.*/missing\.yml: no such file$", config_path=str(tmp_path / "missing.yml"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list", r"rnx\.yml: expected a mapping, got list$"),
        ("nodes: {}", r"rnx\.yml: nodes: at least one node is required$"),
        ("nodez: {}", r"rnx\.yml: unknown key 'nodez'; allowed: default, nodes$"),
        (
            "nodes:\n  a: {socket: /s}\n  b: {socket: /t}",
            r"several nodes and no default; .*\(a, b\)",
        ),
        ("default: c\nnodes:\n  a: {socket: /s}", r"default: 'c' is not one of the nodes \(a\)$"),
        ("nodes:\n  a: {socket: /s, address: 'h:1'}", r"nodes\.a: a socket node takes no address"),
        ("nodes:\n  a: {adress: 'h:1'}", r"nodes\.a: unknown key 'adress'; allowed: address, ca"),
        ("nodes:\n  a: {address: 'h:1', ca: c}", r"nodes\.a: missing cert, key \(a TLS node needs"),
        ("nodes:\n  a: [1]", r"nodes\.a: expected a mapping, got list$"),
        ("nodes: [", r"rnx\.yml: cannot be read: "),
    ],
)
def test_a_bad_config_names_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "rnx.yml", text)
    refused(message, config_path=str(path))


@pytest.mark.parametrize("address", ["web1", "web1:", ":50051", "web1:http", "web1:65536", "h:0"])
def test_an_address_is_host_and_port(tmp_path: Path, address: str) -> None:
    tls_files(tmp_path)
    text = f"nodes:\n  a: {{address: '{address}', cert: client.crt, key: client.key, ca: ca.crt}}"
    path = write(tmp_path / "rnx.yml", text)
    refused(rf"nodes\.a\.address: '{address}' is not HOST:PORT$", config_path=str(path))


def test_an_ipv6_address_in_brackets_is_accepted(tmp_path: Path) -> None:
    tls_files(tmp_path)
    text = "nodes:\n  a: {address: '[::1]:50051', cert: client.crt, key: client.key, ca: ca.crt}"
    nodes, default = load_nodes(write(tmp_path / "rnx.yml", text))
    assert (nodes["a"].address, default) == ("[::1]:50051", None)


def test_a_certificate_file_that_is_not_there_is_named(tmp_path: Path) -> None:
    tls_files(tmp_path)
    (tmp_path / "client.key").unlink()
    text = "nodes:\n  a: {address: 'h:1', cert: client.crt, key: client.key, ca: ca.crt}"
    path = write(tmp_path / "rnx.yml", text)
    refused(r"nodes\.a\.key: .*/client\.key does not exist$", config_path=str(path))


def test_an_unknown_node_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "rnx.yml", "nodes:\n  a: {socket: /s}\n  b: {socket: /t}")
    refused(r"^node 'c' is not in .*rnx\.yml; known: a, b$", config_path=str(path), node="c")
