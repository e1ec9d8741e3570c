"""The volume manager: create, list, remove; and mounting volumes for the jobs that name them.

A volume is mounted on the host by PID 1 (a transient mount unit, so `systemctl status` shows
it) the first time it is needed after a boot, and stays mounted; jobs bind it from there. Jobs
that use a volume require its mount (RequiresMountsFor=), and a volume that a live job names is
never removed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import JobState
from joblet_agent.domain.sharing import Need, Principal, Share, shared_with, unshared
from joblet_agent.domain.volume import (
    MAX_VOLUMES,
    Volume,
    VolumeMount,
    VolumeRequest,
    VolumeType,
    check_name,
    parse_volume_request,
)
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import Clock, GroupRecords, JobStore, SystemdManager, VolumeStorage
from joblet_agent.units.volume import VolumeBinding, mount_properties, mount_unit

logger = logging.getLogger(__name__)

MOUNT_TIMEOUT_SEC = 30.0
_LIVE = frozenset(s for s in JobState if not s.is_terminal)


@dataclass(frozen=True, slots=True)
class VolumeStatus:
    volume: Volume
    used_bytes: int | None
    jobs: tuple[str, ...]
    mounted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.volume.to_dict(),
            "used_bytes": self.used_bytes,
            "jobs": list(self.jobs),
            "mounted": self.mounted,
            "persistent": self.volume.persistent,
        }


class VolumeService:
    def __init__(
        self,
        config: AgentConfig,
        host: HostInfo,
        store: JobStore,
        clock: Clock,
        *,
        files: VolumeStorage,
        groups: GroupRecords,
    ) -> None:
        self.config = config
        self.host = host
        self.store = store
        self.clock = clock
        self.files = files
        self.groups = groups
        self.systemd: SystemdManager | None = None
        self._volumes: dict[str, Volume] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def attach(self, systemd: SystemdManager) -> None:
        self.systemd = systemd

    @property
    def _pid1(self) -> SystemdManager:
        assert self.systemd is not None, "attach() a systemd manager first"
        return self.systemd

    def load(self) -> None:
        """At start: the volumes on disk, and their groups published for PID 1 to resolve."""
        self._volumes = {v.name: v for v in self.files.load_all()}
        for volume in self._volumes.values():
            self.groups.publish_group(volume.group, volume.gid(self.config.jobs))
        if self._volumes:
            logger.info("%d volumes: %s", len(self._volumes), ", ".join(self._volumes))

    # -- commands -------------------------------------------------------------------------

    def parse_request(self, data: object) -> VolumeRequest:
        """A request's body as a volume this agent may make (sizes within its bounds)."""
        return parse_volume_request(
            data, max_bytes=self.config.jobs.max_volume_bytes, memory_bytes=self.host.memory_bytes
        )

    async def create(self, wanted: VolumeRequest, by: Principal) -> VolumeStatus:
        """`wanted` was parsed against this agent's bounds (parse_request); it is `by`'s."""
        if wanted.name in self._volumes:
            raise JobletError(ErrorCode.CONFLICT, f"name: volume {wanted.name!r} already exists")
        most = self.config.jobs.max_volumes_per_owner
        held = sum(v.owner == by.owner for v in self._volumes.values())
        if not by.manages_all and held >= most:
            raise JobletError(
                ErrorCode.TOO_MANY,
                f"name: {by.owner} has {held} volumes; one owner may have "
                f"{most} (jobs.max_volumes_per_owner)",
                hint="remove one first: rnx volume remove NAME",
            )
        taken = {v.slot for v in self._volumes.values()}
        slot = next((s for s in range(MAX_VOLUMES) if s not in taken), None)
        if slot is None:
            raise JobletError(ErrorCode.CONFLICT, f"this agent has {MAX_VOLUMES} volumes already")
        volume = Volume(
            name=wanted.name,
            type=wanted.type,
            size_bytes=wanted.size_bytes,
            slot=slot,
            created_at=self.clock.now(),
            created_by=by.owner,
            owner=by.owner,
        )
        gid = volume.gid(self.config.jobs)
        self._volumes[volume.name] = volume  # taken while we await
        try:
            await self.files.create(volume, gid)
            self.groups.publish_group(volume.group, gid)
            await self._mount(volume)
        except BaseException:
            del self._volumes[volume.name]
            await self._unmount(volume)
            self.files.remove(volume.name)
            self.groups.withdraw_group(volume.group, gid)
            raise
        logger.info(
            "volume %s created by %s: %s, %d bytes",
            volume.name,
            by.owner,
            volume.type,
            volume.size_bytes,
        )
        return self._status(volume, {})  # new: no job names it yet

    async def create_missing(
        self, mounts: tuple[VolumeMount, ...], by: Principal
    ) -> tuple[str, ...]:
        """Volumes a job names that do not exist yet, created for `by` with the configured size
        (if jobs.auto_volume_size is set); the warnings that say so."""
        size = self.config.jobs.auto_volume_bytes
        created = []
        for mount in mounts:
            if mount.name in self._volumes or size is None:
                continue
            await self.create(VolumeRequest(mount.name, VolumeType.FILESYSTEM, size), by)
            created.append(
                f"volume {mount.name!r} did not exist: created (filesystem, {size >> 20} MiB)"
            )
        return tuple(created)

    def all(self, by: Principal) -> list[VolumeStatus]:
        """The volumes `by` may see: their own and those shared with them (maintainers and
        admins: all)."""
        users = self._users()
        return [
            self._status(v, users)
            for v in sorted(self._volumes.values(), key=lambda v: v.name)
            if v.shared.allows(by, Need.SEE)
        ]

    def get(self, name: str, by: Principal) -> VolumeStatus:
        volume = self._find(check_name("name", name))
        volume.shared.require(by, Need.SEE)
        return self._status(volume, self._users())

    def share(self, name: str, share: Share, by: Principal) -> VolumeStatus:
        """Share the volume with `share.owner` (read-only or not), or change how."""
        volume = self._find(check_name("name", name))
        volume.shared.require(by, Need.MANAGE)
        if share.owner == volume.owner:
            raise JobletError(
                ErrorCode.INVALID, f"with: {share.owner} owns volume {name!r}; nothing to share"
            )
        return self._save(replace(volume, shares=shared_with(volume.shares, share)), by)

    def unshare(self, name: str, owner: str, by: Principal) -> VolumeStatus:
        volume = self._find(check_name("name", name))
        volume.shared.require(by, Need.MANAGE)
        shares = unshared(volume.shares, owner, what=f"volume {name!r}")
        return self._save(replace(volume, shares=shares), by)

    def check_use(self, mounts: tuple[VolumeMount, ...], by: Principal) -> None:
        """Refuse a job naming a volume `by` may not mount as asked (missing ones are left to
        create_missing and bindings)."""
        for index, mount in enumerate(mounts):
            volume = self._volumes.get(mount.name)
            if volume is not None:
                need = Need.USE_LIMITED if mount.read_only else Need.USE
                volume.shared.require(by, need, field=f"volumes[{index}]")

    async def remove(self, name: str, by: Principal) -> None:
        volume = self._find(check_name("name", name))
        volume.shared.require(by, Need.MANAGE)
        users = self._users().get(volume.name, [])
        if users:
            raise JobletError(
                ErrorCode.CONFLICT,
                f"volume {name!r} is in use by {len(users)} live job(s): {', '.join(users[:5])}",
                hint="stop those jobs first",
            )
        async with self._lock(name):
            await self._unmount(volume)
            del self._volumes[name]
            self.files.remove(name)
            self.groups.withdraw_group(volume.group, volume.gid(self.config.jobs))
        logger.info("volume %s removed", name)

    async def bindings(
        self, mounts: tuple[VolumeMount, ...], by: Principal
    ) -> tuple[VolumeBinding, ...]:
        """The job's volumes, each mounted (now, if this is its first use since boot), if `by`
        (the job's owner) may mount it so."""
        out = []
        for index, mount in enumerate(mounts):
            volume = self._find(mount.name, field="volumes")
            need = Need.USE_LIMITED if mount.read_only else Need.USE
            volume.shared.require(by, need, field=f"volumes[{index}]")
            await self._mount(volume)
            out.append(
                VolumeBinding(
                    name=volume.name,
                    host_path=PurePosixPath(self.files.mount_point(volume.name)),
                    group=volume.group,
                    read_only=mount.read_only,
                )
            )
        return tuple(out)

    # -- internals ------------------------------------------------------------------------

    def _save(self, volume: Volume, by: Principal) -> VolumeStatus:
        self.files.save(volume)
        self._volumes[volume.name] = volume
        shown = ", ".join(f"{s.owner}{' (ro)' if s.read_only else ''}" for s in volume.shares)
        logger.info("volume %s shared by %s with: %s", volume.name, by.owner, shown or "no one")
        return self._status(volume, self._users())

    def _find(self, name: str, *, field: str = "name") -> Volume:
        volume = self._volumes.get(name)
        if volume is None:
            have = ", ".join(sorted(self._volumes)) or "none"
            raise JobletError(
                ErrorCode.NOT_FOUND,
                f"{field}: there is no volume {name!r}; volumes: {have}",
                hint=f"create it: rnx volume create {name} --size=1G",
            )
        return volume

    def _users(self) -> dict[str, list[str]]:
        """Volume name -> the live jobs naming it (one read of the store for them all)."""
        users: dict[str, list[str]] = {}
        for record in self.store.list(states=_LIVE):
            for mount in record.spec.volumes:
                users.setdefault(mount.name, []).append(record.id)
        return users

    def _status(self, volume: Volume, users: dict[str, list[str]]) -> VolumeStatus:
        used = self.files.usage(volume.name)
        return VolumeStatus(
            volume=volume,
            used_bytes=used,
            jobs=tuple(users.get(volume.name, ())),
            mounted=used is not None,
        )

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _unit(self, volume: Volume) -> str:
        return mount_unit(PurePosixPath(self.files.mount_point(volume.name)))

    async def _mount(self, volume: Volume) -> None:
        unit = self._unit(volume)
        async with self._lock(volume.name):
            state = await self._pid1.active_state(unit)
            if state == "active":
                return
            if state is not None:  # failed or leftover: forget it, then mount afresh
                await self._pid1.reset_failed(unit)
            gid = volume.gid(self.config.jobs)
            where = PurePosixPath(self.files.mount_point(volume.name))
            image = PurePosixPath(self.files.image(volume.name))
            properties = mount_properties(volume, image=image, where=where, gid=gid)
            try:
                result = await self._pid1.run(unit, properties, within=MOUNT_TIMEOUT_SEC)
            except JobletError:
                result = "timeout"
            if result != "done":
                await self._pid1.reset_failed(unit)
                raise JobletError(
                    ErrorCode.SYSTEMD,
                    f"volume {volume.name!r} could not be mounted ({unit}: {result})",
                    hint=f"journalctl -u {unit} says why",
                )
            await asyncio.to_thread(self.files.prepare_root, volume.name, gid)
            if volume.type is VolumeType.MEMORY:
                logger.info(
                    "memory volume %s mounted (empty: it does not outlive a boot)", volume.name
                )

    async def _unmount(self, volume: Volume) -> None:
        unit = self._unit(volume)
        if await self._pid1.active_state(unit) is None:
            return
        try:
            await self._pid1.stop(unit, within=MOUNT_TIMEOUT_SEC)
        except TimeoutError:
            raise JobletError(ErrorCode.SYSTEMD, f"{unit} did not unmount") from None
        if await self._pid1.active_state(unit) == "failed":
            await self._pid1.reset_failed(unit)
