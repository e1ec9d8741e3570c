"""Ended jobs' files go after a while (review M5): a job's directory (its /work image, up to
jobs.max_work_size each, and what its helpers wrote) is removed jobs.work_retention after its end,
while its record stays until someone deletes it (`rnx job status` says the files were
reclaimed). The same sweep drops uploads no job took (jobs.upload_retention)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import PurePosixPath

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.job import JobState
from joblet_agent.errors import JobletError
from joblet_agent.ports import Clock, JobFiles
from joblet_agent.services.job.records import JobRecords
from joblet_agent.services.upload import UploadService
from joblet_agent.units.paths import JobPaths

logger = logging.getLogger(__name__)

ENDED = frozenset(state for state in JobState if state.is_terminal)
# How often the sweep runs: a quarter of the shortest retention, within these bounds.
MIN_PERIOD_SEC = 0.5
MAX_PERIOD_SEC = 60.0


class Retention:
    def __init__(
        self,
        config: AgentConfig,
        records: JobRecords,
        *,
        files: JobFiles,
        clock: Clock,
        uploads: UploadService,
    ) -> None:
        self.config = config
        self.records = records
        self.files = files
        self.clock = clock
        self.uploads = uploads

    @property
    def period_sec(self) -> float:
        policy = self.config.jobs
        shortest = min(policy.work_retention_sec or MAX_PERIOD_SEC, policy.upload_retention_sec)
        return min(max(shortest / 4, MIN_PERIOD_SEC), MAX_PERIOD_SEC)

    def sweep(self) -> int:
        """Remove the files of jobs that ended jobs.work_retention ago or more, and uploads no
        job took; returns how many jobs' files went. No await inside: a job deleted meanwhile
        is not written back."""
        self.uploads.expire()
        retention = self.config.jobs.work_retention_sec
        if retention is None:
            return 0
        now = self.clock.now()
        cutoff = now - timedelta(seconds=retention)
        reclaimed = 0
        for record in self.records.store.with_files(ENDED):
            if (record.ended_at or record.created_at) > cutoff:
                continue
            self.files.remove(JobPaths.for_job(PurePosixPath(self.config.jobs_dir), record.id))
            # Straight to the store: the job's end was told to whoever listens long ago.
            self.records.store.put(record.evolve(files_reclaimed_at=now))
            logger.info(
                "reclaimed the files of job %s, ended %s",
                record.id,
                record.ended_at,
                extra={"JOB_ID": record.id},
            )
            reclaimed += 1
        return reclaimed

    async def run(self) -> None:
        """Sweep now and then, for the agent's life (daemon.serve cancels it)."""
        while True:
            try:
                self.sweep()
            except (JobletError, OSError) as exc:  # the next sweep tries again
                logger.error("reclaiming ended jobs' files failed: %s", exc)
            await asyncio.sleep(self.period_sec)
