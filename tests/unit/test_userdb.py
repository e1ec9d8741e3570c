"""The job users' userdb records (adapters/userdb.py): what PID 1 resolves User= with."""

from __future__ import annotations

import json
import os
from pathlib import Path

from joblet_agent.adapters.userdb import publish_group, publish_pool
from joblet_agent.domain.config import JobPolicy


def test_a_new_uid_base_rewrites_the_records_and_drops_the_old_uids(tmp_path: Path) -> None:
    """Records were written only when missing: after jobs.uid_base changed, PID 1 still ran each
    job as the old UID while the agent gave its /work to the new one."""
    publish_group("joblet-vol-data", 0x7A000000 + 70000, tmp_path)  # not the pool's: kept
    publish_pool(JobPolicy(max_running=2, uid_base=0x7A000000), tmp_path)
    publish_pool(JobPolicy(max_running=2, uid_base=0x7B000000), tmp_path)
    for slot in range(2):
        user = json.loads((tmp_path / f"joblet-u{slot}.user").read_text())
        group = json.loads((tmp_path / f"joblet-u{slot}.group").read_text())
        assert (user["uid"], user["gid"], group["gid"]) == (0x7B000000 + slot,) * 3
        for kind in ("user", "group"):
            assert os.readlink(tmp_path / f"{0x7B000000 + slot}.{kind}") == f"joblet-u{slot}.{kind}"
            assert not (tmp_path / f"{0x7A000000 + slot}.{kind}").is_symlink()
    assert os.readlink(tmp_path / f"{0x7A000000 + 70000}.group") == "joblet-vol-data.group"
