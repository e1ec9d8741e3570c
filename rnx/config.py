"""Where rnx connects: ~/.rnx/rnx-config.yml's nodes (mutual TLS), or the local agent's socket.

default: web1
nodes:
  web1:
    address: "web1.example.com:50051"
    cert: "client.crt"            # relative paths are relative to this file
    key: "client.key"
    ca: "ca.crt"
  local:
    socket: "/run/joblet/joblet.sock"
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnx.errors import RnxError

DEFAULT_CONFIG = Path("~/.rnx/rnx-config.yml")
DEFAULT_SOCKET = "/run/joblet/joblet.sock"


@dataclass(frozen=True, slots=True)
class Target:
    """One agent endpoint: a Unix socket, or host:port with the client's certificate."""

    name: str
    socket: str | None = None
    address: str | None = None
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def describe(self) -> str:
        return self.address or f"unix:{self.socket}"


def resolve_target(*, config_path: str | None, node: str | None, socket_path: str | None) -> Target:
    """--socket wins; then the config's node; then the local socket when there is no config."""
    if socket_path:
        return Target(name="local", socket=socket_path)
    explicit = config_path or os.environ.get("RNX_CONFIG")
    path = Path(explicit or DEFAULT_CONFIG).expanduser()
    if path.exists():
        nodes, default = load_nodes(path)
        return _node(nodes, node or default, path)
    if explicit:
        raise _bad(f"{path}: no such file")
    if node:
        raise _bad(f"--node {node}: there is no {path} to find it in")
    if Path(DEFAULT_SOCKET).exists():
        return Target(name="local", socket=DEFAULT_SOCKET)
    raise _bad(
        f"no {DEFAULT_CONFIG} and no local agent at {DEFAULT_SOCKET}; "
        "ask an admin for a client certificate (joblet-agent pki client) and its rnx-config.yml"
    )


def _node(nodes: dict[str, Target], chosen: str | None, path: Path) -> Target:
    if chosen is None:
        if len(nodes) != 1:
            raise _bad(
                f"{path}: several nodes and no default; pick one with --node "
                f"({', '.join(sorted(nodes))})"
            )
        chosen = next(iter(nodes))
    if chosen not in nodes:
        raise _bad(f"node {chosen!r} is not in {path}; known: {', '.join(sorted(nodes))}")
    return nodes[chosen]


def load_nodes(path: Path) -> tuple[dict[str, Target], str | None]:
    """The nodes of an rnx-config.yml and the name of its default node."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _bad(f"{path}: cannot be read: {exc}") from exc
    top = _mapping(data, f"{path}")
    _only(top, {"default", "nodes"}, f"{path}")
    nodes_data = _mapping(top.get("nodes"), f"{path}: nodes")
    if not nodes_data:
        raise _bad(f"{path}: nodes: at least one node is required")
    nodes = {str(n): _target(str(n), v, path) for n, v in nodes_data.items()}
    default = top.get("default")
    if default is not None and default not in nodes:
        raise _bad(
            f"{path}: default: {default!r} is not one of the nodes ({', '.join(sorted(nodes))})"
        )
    return nodes, default


def _target(name: str, data: Any, path: Path) -> Target:
    where = f"{path}: nodes.{name}"
    fields = _mapping(data, where)
    _only(fields, {"address", "cert", "key", "ca", "socket"}, where)
    if "socket" in fields:
        if set(fields) != {"socket"}:
            raise _bad(f"{where}: a socket node takes no address, cert, key or ca")
        return Target(name=name, socket=str(fields["socket"]))
    missing = [k for k in ("address", "cert", "key", "ca") if not fields.get(k)]
    if missing:
        raise _bad(
            f"{where}: missing {', '.join(missing)} (a TLS node needs address, cert, key and ca)"
        )
    address = str(fields["address"])
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(f"{where}.address: {address!r} is not HOST:PORT")

    def file(key: str) -> Path:
        value = (path.parent / str(fields[key])).resolve()
        if not value.is_file():
            raise _bad(f"{where}.{key}: {value} does not exist")
        return value

    return Target(name=name, address=address, cert=file("cert"), key=file("key"), ca=file("ca"))


def _mapping(data: Any, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _bad(f"{where}: expected a mapping, got {type(data).__name__}")
    return data


def _only(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _bad(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _bad(message: str) -> RnxError:
    return RnxError("config", message)
