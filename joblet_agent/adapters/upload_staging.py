"""Where uploads wait for their job: root-only trees under <state>/uploads/<id>/tree, extracted
member by member (adapters/archive.py) on a pool of threads of their own (review H4)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from joblet_agent.adapters.archive_feed import extract_async
from joblet_agent.adapters.trees import discard_tree
from joblet_agent.domain.archive import Extracted, ExtractLimits

logger = logging.getLogger(__name__)

# Threads extracting uploads at once; the service hands each caller a share of them.
EXTRACTING_THREADS = 8


class StagedUploads:
    """The UploadStaging port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._extracting = ThreadPoolExecutor(
            max_workers=EXTRACTING_THREADS, thread_name_prefix="joblet-upload"
        )

    def reset(self) -> None:
        """At start: no upload survives the agent (its request died with it). Never fails the
        start: what cannot be removed is logged and left, and uploads go on."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.directory.chmod(0o700)  # staged trees are root's alone
            leftovers = list(self.directory.iterdir())
        except OSError as exc:
            logger.error("uploads: cannot prepare %s: %s", self.directory, exc)
            return
        for leftover in leftovers:
            discard_tree(leftover, "the leftover upload")

    def tree(self, upload_id: str) -> Path:
        return self.directory / upload_id / "tree"

    async def extract(
        self,
        upload_id: str,
        stream: AsyncIterator[bytes],
        limits: ExtractLimits,
        *,
        slot: AbstractAsyncContextManager[None],
    ) -> Extracted:
        tree = self.tree(upload_id)
        tree.mkdir(mode=0o700, parents=True)
        return await extract_async(
            stream, tree, limits, what="upload", executor=self._extracting, slot=slot
        )

    def discard(self, upload_id: str) -> None:
        discard_tree(self.directory / upload_id, "the upload")
