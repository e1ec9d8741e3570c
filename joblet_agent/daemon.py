"""`joblet-agent serve`: wire the adapters, reconcile with PID 1, serve the sockets systemd passed.

Nothing here binds a port: joblet.socket owns the listening sockets (socket activation), so
connections made while the agent restarts wait in the socket's queue instead of being refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aiohttp import web

from joblet_agent.adapters.archive_out import TarMembers
from joblet_agent.adapters.calendar import SystemdCalendar
from joblet_agent.adapters.clock import SystemClock
from joblet_agent.adapters.exec_journal import NativeExecJournal
from joblet_agent.adapters.host_probe import probe_host
from joblet_agent.adapters.job_channel import UnixJobChannels
from joblet_agent.adapters.job_init import locate_init
from joblet_agent.adapters.job_root import JobDirectories, collect_skeletons, prepare_skeleton
from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.adapters.journal import JournalctlJournal
from joblet_agent.adapters.network_files import NetworkDirectories
from joblet_agent.adapters.network_store import SqliteNetworkStore
from joblet_agent.adapters.resolver import resolve_ipv4
from joblet_agent.adapters.runtime_store import RuntimeDirectory
from joblet_agent.adapters.schedule_store import SqliteScheduleStore
from joblet_agent.adapters.staged_files import StagedTree
from joblet_agent.adapters.systemd_dbus import SystemdBus
from joblet_agent.adapters.upload_staging import StagedUploads
from joblet_agent.adapters.userdb import UserdbGroups, publish_pool
from joblet_agent.adapters.volume_files import VolumeFiles
from joblet_agent.api.app import make_app
from joblet_agent.api.listeners import PassedSocket, fit_to_descriptors, local_site, tcp_site
from joblet_agent.api.malformed import log_malformed_requests_in_one_line
from joblet_agent.api.revocation import OpenSessions, cut_revoked
from joblet_agent.api.tls import ServerContexts, report_handshake_failures
from joblet_agent.domain.capacity import check_against_host
from joblet_agent.domain.config import AgentConfig, Connections
from joblet_agent.domain.host import HostInfo
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.exec import ExecService
from joblet_agent.services.job.lifecycle import UNIT_PREFIXES
from joblet_agent.services.job.service import JobService
from joblet_agent.services.job.slice_caps import cap_jobs_slice
from joblet_agent.services.job_file import JobFileService
from joblet_agent.services.network import NetworkService
from joblet_agent.services.runtime import RuntimeService
from joblet_agent.services.schedule import ScheduleService
from joblet_agent.services.upload import UploadService
from joblet_agent.services.volume import VolumeService

logger = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
DEV_BACKLOG = 1024  # as joblet.socket's Backlog=


def inherited_sockets() -> list[socket.socket]:
    """The listening sockets systemd passed (sd_listen_fds), or none when not socket-activated."""
    from pystemd.daemon import listen_fds

    count = int(listen_fds(True))
    return [PassedSocket(fileno=SD_LISTEN_FDS_START + i) for i in range(count)]


def notify(**states: object) -> None:
    if os.environ.get("NOTIFY_SOCKET"):
        from pystemd.daemon import notify as sd_notify

        sd_notify(False, **states)


def _report(host: HostInfo, config: AgentConfig) -> None:
    """What this host can enforce, and how jobs are kept apart, in the agent's log."""
    missing = host.unenforced
    if missing:
        logger.warning(
            "this host cannot enforce these limits: %s (cgroup mode %s); jobs asking "
            "for them are %s",
            ", ".join(missing),
            host.cgroup_mode,
            "refused" if config.jobs.unenforceable_limits == "refuse" else "warned",
        )
    logger.info(
        "process isolation path: %s",
        "PrivatePIDs" if host.has_private_pids else "ProtectProc=invisible (systemd < 257)",
    )


@dataclass(frozen=True, slots=True)
class Agent:
    """Every object of a running agent, built in one place (wire)."""

    config: AgentConfig
    host: HostInfo
    store: SqliteJobStore
    network_store: SqliteNetworkStore
    jobs: JobService
    networks: NetworkService
    runtimes: RuntimeService
    schedule_store: SqliteScheduleStore
    schedules: ScheduleService
    execs: ExecService
    files: JobFileService


def wire(config: AgentConfig) -> Agent:
    """Probe the host, prepare what jobs need on it, and build the adapters and the services on
    them: the only place objects are constructed."""
    config.jobs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    host = probe_host(config.jobs_dir)
    check_against_host(config.admission, config.quotas, host)
    _report(host, config)
    publish_pool(config.jobs)
    root = prepare_skeleton(config)
    init = PurePosixPath(locate_init())
    clock = SystemClock()
    store = SqliteJobStore(config.database)
    network_store = SqliteNetworkStore(config.database)
    networks = NetworkService(
        config,
        network_store,
        store,
        files=NetworkDirectories(config.state_dir / "networks"),
        clock=clock,
        resolve=resolve_ipv4,
        python=sys.executable,  # the host side's helper runs this agent's own Python
    )
    runtime_store = RuntimeDirectory(config.runtimes_dir)
    runtime_store.prepare()
    uploads = UploadService(config, clock, StagedUploads(config.state_dir / "uploads"))
    volumes = VolumeService(
        config,
        host,
        store,
        clock,
        files=VolumeFiles(config.state_dir / "volumes"),
        groups=UserdbGroups(),
    )
    calendar = SystemdCalendar()
    jobs = JobService(
        config,
        host,
        store,
        JournalctlJournal(),
        files=JobDirectories(),
        clock=clock,
        uploads=uploads,
        volumes=volumes,
        networks=networks,
        runtimes=runtime_store,
        calendar=calendar,
        root=PurePosixPath(root),
        init=init,
    )
    execs = ExecService(config, UnixJobChannels(), NativeExecJournal())
    execs.on_touch.append(jobs.lifetime.touch)  # execs, attaches and file calls: not idle
    jobs.lifetime.busy = execs.busy
    files = JobFileService(
        config,
        host,
        execs,
        uploads,
        staged=StagedTree(),
        archive=TarMembers(),
        root=PurePosixPath(root),
        init=init,
    )
    schedule_store = SqliteScheduleStore(config.database)
    schedules = ScheduleService(schedule_store, jobs, calendar=calendar, clock=clock)
    return Agent(
        config,
        host,
        store,
        network_store,
        jobs,
        networks,
        RuntimeService(runtime_store, jobs),
        schedule_store,
        schedules,
        execs,
        files,
    )


async def serve(config: AgentConfig, *, listen: Path | None = None) -> None:
    agent = wire(config)
    service, networks = agent.jobs, agent.networks
    service.uploads.reset()
    service.volumes.load()

    # The units whose signals the engine hears; helper units started with run() (networks' host
    # side, the kernel's log) are awaited by the bus adapter itself.
    bus = await SystemdBus.connect(UNIT_PREFIXES, service.on_systemd_event)
    service.attach(bus)
    networks.attach(bus)
    try:
        await cap_jobs_slice(bus, config, agent.host)
    except JobletError as exc:  # each job keeps its own limits; say loudly that these are off
        logger.error("could not cap %s (all jobs together): %s", config.slice, exc.message)
    agent.schedules.attach(bus)
    agent.files.attach(bus)
    await service.reconcile()
    await networks.reconcile()  # after the jobs': jobs that ended meanwhile free their places
    await agent.schedules.reconcile()
    # Old skeletons go once no unit names them; those running jobs use are never touched.
    collect_skeletons(config, await service.roots_in_use())

    sockets = _listening_sockets(listen)
    app = make_app(
        service,
        config.access,
        agent.runtimes,
        agent.schedules,
        exec_service=agent.execs,
        file_service=agent.files,
    )
    log_malformed_requests_in_one_line()
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    limits = fit_to_descriptors(config.connections)
    # TLS from the PKI as it is now and as it will be: one made after the start is used from
    # the next connection on, and connections of certificates revoked meanwhile are cut.
    contexts, sessions = ServerContexts(config.pki_dir), OpenSessions()
    for sock in sockets:
        await _serve_socket(runner, sock, limits, contexts, sessions)
    revocations = asyncio.create_task(cut_revoked(contexts, sessions))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    notify(ready=1, status=f"serving; {len(sockets)} socket(s)")
    watchdog = asyncio.create_task(_watchdog())
    retention = asyncio.create_task(service.retention.run())  # ended jobs' files, uploads
    logger.info("joblet-agent ready on %d socket(s)", len(sockets))
    await stop.wait()
    notify(stopping=1)
    for task in (watchdog, revocations, retention):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await runner.cleanup()
    # Jobs being finished get their records written; one not done in time is read again at the
    # next start (reconcile), so a stop never waits long for them.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(agent.schedules.settle(), service.settle()), 5)
    bus.disconnect()
    agent.schedule_store.close()
    agent.network_store.close()
    agent.store.close()


def _listening_sockets(listen: Path | None) -> list[socket.socket]:
    sockets = inherited_sockets()
    if sockets:
        return sockets
    if listen is None:
        raise JobletError(
            ErrorCode.CONFIG,
            "no sockets were passed by systemd",
            hint="start joblet.socket, or pass --listen PATH for a Unix socket",
        )
    return [_bind_unix(listen)]


async def _watchdog() -> None:
    """Ping at half of WatchdogSec while the event loop is healthy; a stuck loop gets restarted."""
    usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    if not usec:
        return
    while True:
        notify(watchdog=1)
        await asyncio.sleep(usec / 2_000_000)


def _bind_unix(path: Path) -> socket.socket:
    """Development only (`serve --listen`): the packaged agent never binds a socket itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    sock = PassedSocket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    path.chmod(0o666)
    socket.socket.listen(sock, DEV_BACKLOG)  # PassedSocket.listen() leaves the queue alone
    return sock


async def _serve_socket(
    runner: web.AppRunner,
    sock: socket.socket,
    limits: Connections,
    contexts: ServerContexts,
    sessions: OpenSessions,
) -> None:
    """Unix sockets speak plain HTTP (identity from SO_PEERCRED); TCP speaks HTTPS with mTLS,
    once there is a PKI (until then each connection is closed at once, not left queued)."""
    if sock.family == socket.AF_UNIX:
        await local_site(runner, sock, limits).start()
        return
    if contexts.current() is None:
        logger.warning(
            "no usable PKI in %s (%s): TCP connections are closed until `joblet-agent pki "
            "init` makes one, which is used at once (no restart)",
            contexts.pki_dir,
            contexts.problem,
        )
    report_handshake_failures()  # refused clients learn why; the journal records it
    await tcp_site(runner, sock, limits, contexts.current, sessions).start()
