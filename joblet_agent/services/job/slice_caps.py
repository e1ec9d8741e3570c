"""At every start, the agent caps the slice all jobs run in (domain/job_slice.py), so that jobs
together leave the host and the agent room; the agent's own unit is outside it (system.slice)."""

from __future__ import annotations

import logging

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job_slice import SliceCaps
from joblet_agent.ports import SystemdManager
from joblet_agent.units.job_slice import slice_properties

logger = logging.getLogger(__name__)


async def cap_jobs_slice(pid1: SystemdManager, config: AgentConfig, host: HostInfo) -> SliceCaps:
    """SetUnitProperties(runtime) on the jobs' slice: a drop-in under /run that lasts until the
    next boot, made again by the agent's next start with what joblet.yml says then."""
    caps = config.all_jobs.for_host(host)
    await pid1.set_properties(config.slice, slice_properties(caps))
    logger.info("%s: all jobs together: %s", config.slice, caps.describe())
    return caps
