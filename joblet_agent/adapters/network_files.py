"""Networks' files on the host (the NetworkFiles port): each network's directory with the hosts
file and resolv.conf its jobs see at /run/.network, each network job's batch files for its helper
units, and the desired state of the host's side that the apply unit reads.

<state>/networks/<name>/hosts, resolv.conf   bound read-only into the network's jobs (0755)
<state>/networks/.host-state.json            the apply unit's input (root only)
<state>/networks/.forwarding                  exists while Joblet turned IP forwarding on
<state>/networks/.host-report.json            what the apply unit found on the host
<state>/jobs/<id>/net/                        a job's batch files (root only, never in its root)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any

from joblet_agent.adapters.netlink import REPORT
from joblet_agent.adapters.trees import discard_tree
from joblet_agent.domain.network import HostState, Network
from joblet_agent.files import write_atomic
from joblet_agent.units.paths import JobPaths

logger = logging.getLogger(__name__)


class NetworkDirectories:
    def __init__(self, root: Path, host_resolv_conf: Path = Path("/etc/resolv.conf")) -> None:
        self.root = root
        self._host_resolv_conf = host_resolv_conf

    @property
    def state_file(self) -> Path:
        return self.root / ".host-state.json"

    @property
    def forwarding_marker(self) -> Path:
        return self.root / ".forwarding"

    def directory(self, network: Network) -> PurePosixPath:
        return PurePosixPath(self.root / network.name)

    def host_resolv_conf(self) -> str:
        """The host's own resolv.conf ("" if it has none)."""
        try:
            return self._host_resolv_conf.read_text()
        except OSError:
            return ""

    def write_network(self, network: Network, resolv_conf: str) -> None:
        directory = Path(self.directory(network))
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)  # jobs read it as themselves; its parent stays root-only
        write_atomic(directory / "resolv.conf", resolv_conf, mode=0o644)

    def write_hosts(self, network: Network, text: str) -> None:
        """Whole or not at all: jobs read it while it changes (a directory is bound, so the
        renamed file is what they open next). Nothing if the network has no directory."""
        directory = Path(self.directory(network))
        if directory.is_dir():
            write_atomic(directory / "hosts", text, mode=0o644)

    def remove_network(self, name: str) -> None:
        discard_tree(self.root / name, f"network {name}'s directory")

    def write_job_files(self, paths: JobPaths, files: dict[str, str]) -> None:
        directory = Path(paths.network)
        directory.mkdir(mode=0o700, exist_ok=True)
        for name, text in files.items():
            write_atomic(directory / name, text, mode=0o600)

    def write_state(self, state: HostState) -> Path:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.root / REPORT).unlink(missing_ok=True)  # the next apply's is the one to read
        write_atomic(self.state_file, state.to_json(), mode=0o600)
        return self.state_file

    def has_state(self) -> bool:
        return self.state_file.exists()

    def read_report(self) -> dict[str, Any] | None:
        """What the last apply found on the host (adapters/netlink.py writes it), if any."""
        try:
            data = json.loads((self.root / REPORT).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
