"""Each owner's slice gets its quota (units/owner.py) before the owner's first job after the
agent's own start. PID 1 keeps it (SetUnitProperties, runtime: a drop-in in /run) through
daemon-reload and while the slice has no job, until a reboot, after which the agent starts anew;
a quota changed in joblet.yml applies from the agent's next start."""

from __future__ import annotations

import logging

from joblet_agent.domain.config import AgentConfig
from joblet_agent.ports import SystemdManager
from joblet_agent.units.owner import owner_slice, slice_properties

logger = logging.getLogger(__name__)


class OwnerSlices:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._set: set[str] = set()

    async def ensure(self, pid1: SystemdManager, owner: str) -> str:
        """The owner's slice, its quota set; returns its name."""
        name = owner_slice(self.config.slice, owner)
        if name not in self._set:
            quota = self.config.quotas.of(owner)
            await pid1.set_properties(name, slice_properties(quota))
            self._set.add(name)
            logger.info("slice %s of %s: %s", name, owner, quota.to_dict())
        return name
