"""Client: one method per call of the Joblet API, each returning a typed answer (rnx.client's
models, with `raw` for what they do not model yet). Errors are RnxError, with the agent's code.

The models of jobs are imported with the Client; the others by the methods that return them:
making a frozen dataclass costs most of a millisecond, and `rnx job run` (its start-up is
measured: bench/rnx_cold_start.py) needs the dozen of jobs, not all three dozen."""

from __future__ import annotations

import builtins
import contextlib
import http.client
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from rnx.client.fields import Fields
from rnx.client.job import Job, JobDeleted, JobsDeleted, Metrics
from rnx.client.transport import Transport
from rnx.config import resolve_target
from rnx.errors import RnxError

if TYPE_CHECKING:
    from rnx.client.exec import ExecResult
    from rnx.client.health import Health
    from rnx.client.job_file import Copied, FileListing
    from rnx.client.log import LogEvent
    from rnx.client.network import Network, NetworkRemoved
    from rnx.client.runtime import Runtime, RuntimeList, RuntimeRemoved, RuntimeValidation
    from rnx.client.sandbox import Sandbox
    from rnx.client.schedule import Schedule, ScheduleDeleted
    from rnx.client.session import Session
    from rnx.client.upload import Upload
    from rnx.client.volume import Volume, VolumeRemoved


class Client(Transport):
    """Synchronous client on the standard library's http.client. `Client()` uses
    ~/.rnx/rnx-config.yml's default node if there is one, else the local agent's socket;
    `Client(node="web1")`, `Client(config="path")` or `Client(socket="/run/joblet/joblet.sock")`
    choose."""

    def __init__(
        self, *, socket: str | None = None, config: str | None = None, node: str | None = None
    ) -> None:
        super().__init__(resolve_target(config_path=config, node=node, socket_path=socket))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs -------------------------------------------------------------------------------

    def run(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        secret_env: dict[str, str] | None = None,
        name: str | None = None,
        workdir: str | None = None,
        relax: Sequence[str] = (),
        uploads: Sequence[str] = (),
        upload_dirs: Sequence[str] = (),
        progress: Callable[[int, int], None] | None = None,
        volumes: Sequence[str] = (),
        network: str | None = None,
        allow_egress: Sequence[str] = (),
        runtime: str | None = None,
        priority: int | None = None,
        schedule: str | None = None,
        tty: bool = False,
        stdin: bool = False,
        **limits: Any,
    ) -> Job:
        """Start a job; limits are the API's names (cpu_percent, memory_bytes, timeout_sec, ...).

        uploads (files, to /work/<name>) and upload_dirs (to /work/<dirname>/...) are sent
        first; progress(sent, total) is called as their bytes go. volumes: NAME or NAME:ro.
        network: none (default), isolated, host (admin only) or a network's name. priority:
        0-9 (default 5), its place in the queue when the agent has no room for it now (the
        job is then QUEUED). schedule: a start time to come (30s, in 10m,
        2026-12-24T18:00:00Z, 2026-12-24 18:00): the job is SCHEDULED until then; a calendar
        expression is a recurring schedule (create_schedule). tty: the command gets a terminal,
        stdin: its stdin is fed; both through attach()."""
        upload = self.upload(uploads, upload_dirs, progress).id if uploads or upload_dirs else None
        body = _job_body(
            command,
            env=env,
            secret_env=secret_env,
            name=name,
            workdir=workdir,
            relax=relax,
            upload=upload,
            volumes=volumes,
            network=network,
            allow_egress=allow_egress,
            runtime=runtime,
            schedule=schedule,
            priority=priority,
            limits=limits,
            tty=tty,
            stdin=stdin,
        )
        return Job.from_dict(self._call("POST", "/v1/jobs", body=body), "job")

    def create_schedule(
        self,
        calendar: str,
        command: Sequence[str],
        *,
        name: str | None = None,
        overlap: str | None = None,
        catch_up: bool = True,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        relax: Sequence[str] = (),
        volumes: Sequence[str] = (),
        network: str | None = None,
        allow_egress: Sequence[str] = (),
        runtime: str | None = None,
        priority: int | None = None,
        **limits: Any,
    ) -> Schedule:
        """Run `command` every time the systemd calendar expression elapses (hourly, *:0/15,
        'Mon..Fri *-*-* 02:00'); systemd judges it. Each firing makes a job (rnx's
        list(schedule=name)). overlap: skip (default), queue or parallel; catch_up: a firing
        missed while no agent ran runs once at its start. The other arguments are run()'s."""
        from rnx.client.schedule import Schedule

        job = _job_body(
            command,
            env=env,
            workdir=workdir,
            relax=relax,
            volumes=volumes,
            network=network,
            allow_egress=allow_egress,
            runtime=runtime,
            priority=priority,
            limits=limits,
        )
        body: dict[str, Any] = {"calendar": calendar, "job": job, "catch_up": catch_up}
        if name:
            body["name"] = name
        if overlap:
            body["overlap"] = overlap
        return Schedule.from_dict(self._call("POST", "/v1/schedules", body=body), "schedule")

    def schedules(self, **filters: str) -> builtins.list[Schedule]:
        """The schedules, oldest first; filters: owner."""
        from rnx.client.schedule import Schedule

        listing = Fields(self._call("GET", "/v1/schedules", params=filters), "")
        return [Schedule.read(schedule) for schedule in listing.objs("schedules")]

    def schedule(self, reference: str) -> Schedule:
        """A schedule by name, id or id prefix: its next firing and its latest run too."""
        from rnx.client.schedule import Schedule

        return Schedule.from_dict(self._call("GET", f"/v1/schedules/{reference}"), "schedule")

    def pause_schedule(self, reference: str) -> Schedule:
        from rnx.client.schedule import Schedule

        answer = self._call("POST", f"/v1/schedules/{reference}/pause")
        return Schedule.from_dict(answer, "schedule")

    def resume_schedule(self, reference: str) -> Schedule:
        from rnx.client.schedule import Schedule

        answer = self._call("POST", f"/v1/schedules/{reference}/resume")
        return Schedule.from_dict(answer, "schedule")

    def delete_schedule(self, reference: str) -> ScheduleDeleted:
        """Its timer goes and its waiting runs are canceled; past runs stay jobs."""
        from rnx.client.schedule import ScheduleDeleted

        answer = self._call("DELETE", f"/v1/schedules/{reference}")
        return ScheduleDeleted.from_dict(answer, "deleted schedule")

    def get(self, job_id: str) -> Job:
        """A job by id or unique id prefix."""
        return Job.from_dict(self._call("GET", f"/v1/jobs/{job_id}"), "job")

    def list(self, **filters: str) -> builtins.list[Job]:
        """Jobs, newest first; filters are the API's (state, owner, schedule, limit, offset)."""
        listing = Fields(self._call("GET", "/v1/jobs", params=filters), "")
        return [Job.read(job) for job in listing.objs("jobs")]

    def stop(self, job_id: str) -> Job:
        return Job.from_dict(self._call("POST", f"/v1/jobs/{job_id}/stop"), "job")

    def cancel(self, job_id: str) -> Job:
        return Job.from_dict(self._call("POST", f"/v1/jobs/{job_id}/cancel"), "job")

    def extend(self, job_id: str, timeout: float | str) -> Job:
        """The running (or paused) job may run `timeout` more from now (seconds, or "30m")."""
        answer = self._call("POST", f"/v1/jobs/{job_id}/extend", body={"timeout_sec": timeout})
        return Job.from_dict(answer, "job")

    def pause(self, job_id: str) -> Job:
        """Freeze the job (PAUSED); hosts without the cgroup v2 freezer answer 'unsupported'."""
        return Job.from_dict(self._call("POST", f"/v1/jobs/{job_id}/pause"), "job")

    def resume(self, job_id: str) -> Job:
        return Job.from_dict(self._call("POST", f"/v1/jobs/{job_id}/resume"), "job")

    def delete(self, job_id: str) -> JobDeleted:
        """Delete an ended job's record and files."""
        answer = self._call("DELETE", f"/v1/jobs/{job_id}")
        return JobDeleted.from_dict(answer, "deleted job")

    def delete_all(self) -> JobsDeleted:
        """Delete every ended job of the caller's; running ones are counted, not deleted."""
        return JobsDeleted.from_dict(self._call("DELETE", "/v1/jobs"), "deleted jobs")

    def metrics(self, job_id: str) -> Metrics:
        answer = self._call("GET", f"/v1/jobs/{job_id}/metrics")
        return Metrics.from_dict(answer, "metrics")

    def events(
        self, job_id: str, *, follow: bool = True, after: str | None = None
    ) -> Iterator[LogEvent]:
        """A job's log events, then an `end` event. While following, a dropped connection (the
        agent restarting) is resumed after the last event received: nothing lost or repeated."""
        return self._log_events(job_id, follow=follow, after=after)

    def logs(self, job_id: str, *, follow: bool = True) -> Iterator[str]:
        """The job's output lines; with follow, until the job ends."""
        for event in self.events(job_id, follow=follow):
            if event.line is not None:
                yield event.line.message

    def wait(self, job_id: str) -> Job:
        """Block until the job ends; returns its record."""
        for event in self.events(job_id, follow=True):
            if event.end is not None:
                break
        return self.get(job_id)

    # -- execs ------------------------------------------------------------------------------

    def open_exec(
        self,
        job_id: str,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        timeout: float | str | None = None,
        tty: bool = False,
        stdin: bool = False,
        rows: int = 0,
        cols: int = 0,
    ) -> Session:
        """Start `command` inside the running job JOB (id, name or prefix) and return the
        session: its events() as it runs, its stdin, resize and signal. See exec() for the
        simple case."""
        from rnx.client.session import Session

        request: dict[str, Any] = {"command": command[0], "args": list(command[1:])}
        for key, value in (("env", env), ("workdir", workdir), ("timeout_sec", timeout)):
            if value:
                request[key] = value
        request |= {"tty": tty, "stdin": stdin or tty, "rows": rows, "cols": cols}
        return Session.start(self._websocket(f"/v1/jobs/{job_id}/exec"), request)

    def exec(
        self,
        job_id: str,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        timeout: float | str | None = None,
        input: bytes | str | None = None,
    ) -> ExecResult:
        """Run `command` inside the running job (its root, user, network, limits) and return
        its output and exit code once it ends. `input` is its stdin (else /dev/null); `timeout`
        (seconds, or "30s", "5m") kills it, exit code 124."""
        import threading

        from rnx.client.exec import ExecResult

        session = self.open_exec(
            job_id, command, env=env, workdir=workdir, timeout=timeout, stdin=input is not None
        )
        if input is not None:
            data = input.encode() if isinstance(input, str) else input

            def feed() -> None:  # beside the reading: a command may answer before it read all
                session.stdin(data)
                session.close_stdin()

            threading.Thread(target=feed, daemon=True).start()
        out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        for kind, data in session.events():
            if kind in out:
                out[kind].append(data)
        end = session.end
        if end is None:
            raise RnxError("bad-answer", "the agent ended the exec without its exit status")
        return ExecResult(
            exec_id=session.exec_id,
            job=session.job,
            stdout=b"".join(out["stdout"]),
            stderr=b"".join(out["stderr"]),
            exit_code=end.exit_code,
            signal=end.signal,
            timed_out=end.timed_out,
            raw=end.raw,
        )

    @contextlib.contextmanager
    def sandbox(
        self, command: Sequence[str] = ("sleep", "infinity"), *, keep: bool = False, **run: Any
    ) -> Iterator[Sandbox]:
        """A running job to exec into and read and write files in, for the block: run(command,
        **run) (runtime=, idle_timeout_sec=, timeout_sec=, memory_bytes=, ...), waited for
        until it runs; stopped and deleted at the end (kept with keep=True)."""
        from rnx.client.sandbox import Sandbox, running

        job = self.run(command, **run)
        try:
            yield Sandbox(self, running(self, job))
        finally:
            if not keep:
                with contextlib.suppress(RnxError):
                    self.stop(job.id)
                    self.wait(job.id)
                    self.delete(job.id)

    def attach(self, job_id: str, *, rows: int = 0, cols: int = 0) -> Session:
        """Attach to the terminal (`run(tty=True)`) or stdin (`run(stdin=True)`) of a job's
        own command; its events() end with ("end", None) when the command's terminal closes."""
        from rnx.client.session import Session

        return Session.start(
            self._websocket(f"/v1/jobs/{job_id}/attach"), {"rows": rows, "cols": cols}
        )

    # -- files ------------------------------------------------------------------------------

    def list_files(self, job_id: str, path: str = "/work") -> FileListing:
        """A directory of a job's (running, or ended and not deleted), or one file's entry.
        Paths: /work/..., relative to /work, or /volumes/NAME/... of the job's volumes."""
        from rnx.client.job_file import FileListing

        answer = self._call("GET", f"/v1/jobs/{job_id}/files", params={"path": path})
        return FileListing.from_dict(answer, "listing")

    def read_file(self, job_id: str, path: str) -> bytes:
        """A regular file of a job's, whole (jobs.max_download_size at most)."""
        response = self._get_stream(f"/v1/jobs/{job_id}/files/content", {"path": path})
        try:
            size = int(response.getheader("X-Joblet-Size") or 0)
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        finally:
            response.close()
        if len(data) != size:
            raise RnxError("session-lost", f"{path}: {len(data)} of {size} bytes arrived")
        return data

    def write_file(self, job_id: str, path: str, data: bytes | str, *, mode: int = 0o644) -> Copied:
        """Write `data` to `path` in a running job (its directory must exist), as the job's
        user; written to a new name and renamed: readers never see half of it."""
        import tempfile

        name = PurePosixPath(path).name
        with tempfile.TemporaryDirectory(prefix="rnx-") as directory:
            local = Path(directory) / "data"
            local.write_bytes(data.encode() if isinstance(data, str) else data)
            local.chmod(mode & 0o777)
            upload = self.upload([str(local)])
            return self._copy_in(job_id, upload.id, str(PurePosixPath(path).parent), name)

    def copy_in(
        self,
        job_id: str,
        source: str,
        dest: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> Copied:
        """A local file or directory into a running job, as `docker cp` does: into `dest` if
        it is a directory, else as `dest` (its parent must exist)."""
        local = Path(source)
        is_dir = local.is_dir() and not local.is_symlink()
        into, name = self._destination(job_id, dest, source_is_dir=is_dir)
        if is_dir:
            upload = self.upload([], [source], progress)
        else:
            upload = self.upload([source], [], progress)
        return self._copy_in(job_id, upload.id, into, name)

    def _destination(
        self, job_id: str, dest: str, *, source_is_dir: bool
    ) -> tuple[str, str | None]:
        try:
            found = self.list_files(job_id, dest)
        except RnxError as exc:
            if exc.code != "not-found" or dest.endswith("/"):
                raise
            return str(PurePosixPath(dest).parent), PurePosixPath(dest).name
        if found.type == "directory":
            return dest, None
        if source_is_dir or dest.endswith("/"):
            raise RnxError("invalid", f"{dest} is a {found.type} in the job, not a directory")
        return str(PurePosixPath(dest).parent), PurePosixPath(dest).name

    def _copy_in(self, job_id: str, upload: str, into: str, name: str | None) -> Copied:
        from rnx.client.job_file import Copied

        body: dict[str, Any] = {"upload": upload, "path": into}
        if name is not None:
            body["name"] = name
        return Copied.from_dict(self._call("POST", f"/v1/jobs/{job_id}/files", body=body), "copied")

    def download(
        self,
        job_id: str,
        path: str,
        dest: str = ".",
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        """A job's file or directory onto this machine (`docker cp` semantics: into `dest` if
        it is a directory, else as `dest`); nothing half-written. Returns what was written."""
        from rnx import downloads

        found = self.list_files(job_id, path)
        target = Path(dest)
        if target.is_dir():
            target = target / PurePosixPath(path.rstrip("/") or "work").name
        route = "archive" if found.type == "directory" else "content"
        response = self._get_stream(f"/v1/jobs/{job_id}/files/{route}", {"path": path})
        try:
            size = int(response.getheader("X-Joblet-Size") or 0)
            chunks = iter(lambda: response.read1(1024 * 1024), b"")
            report = None if progress is None else (lambda done: progress(done, size))
            if route == "archive":
                downloads.extract_directory(chunks, target, report)
            else:
                mode = int(response.getheader("X-Joblet-Mode") or "644", 8)
                downloads.save_file(chunks, target, mode=mode, size=size, progress=report)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        finally:
            response.close()
        return target

    # -- uploads ----------------------------------------------------------------------------

    def upload(
        self,
        files: Sequence[str],
        directories: Sequence[str] = (),
        progress: Callable[[int, int], None] | None = None,
    ) -> Upload:
        """Announce, then stream files and directories for a job; give the upload's id to run()
        (which does all this itself when given uploads or upload_dirs)."""
        from rnx import uploads  # tarfile and all: only when there is something to send
        from rnx.client.upload import Upload

        plan = uploads.plan(files, directories)
        total = plan.bytes
        body = {"bytes": total, "entries": len(plan.entries)}
        announced = Upload.from_dict(self._call("POST", "/v1/uploads", body=body), "upload")
        chunks = uploads.stream(plan, None if progress is None else lambda n: progress(n, total))
        path = f"/v1/uploads/{announced.id}"
        sent = self._put_stream(path, chunks, content_type="application/x-tar")
        return Upload.from_dict(sent, "upload")

    # -- volumes ----------------------------------------------------------------------------

    def create_volume(self, name: str, *, size: str, type: str = "filesystem") -> Volume:
        """size: 512M, 1G, 10GB ...; type: filesystem (kept across reboots) or memory."""
        from rnx.client.volume import Volume

        body = {"name": name, "size": size, "type": type}
        return Volume.from_dict(self._call("POST", "/v1/volumes", body=body), "volume")

    def volumes(self) -> builtins.list[Volume]:
        from rnx.client.volume import Volume

        listing = Fields(self._call("GET", "/v1/volumes"), "")
        return [Volume.read(volume) for volume in listing.objs("volumes")]

    def volume(self, name: str) -> Volume:
        from rnx.client.volume import Volume

        return Volume.from_dict(self._call("GET", f"/v1/volumes/{name}"), "volume")

    def share_volume(self, name: str, *, with_: str, read_only: bool = False) -> Volume:
        """with_: NAME (of the caller's own kind), cert:NAME or unix:NAME; read_only: it may
        then be mounted only as NAME:ro."""
        from rnx.client.volume import Volume

        path = f"/v1/volumes/{name}/shares/{quote(with_, safe=':')}"
        answer = self._call("PUT", path, body={"read_only": read_only})
        return Volume.from_dict(answer, "volume")

    def unshare_volume(self, name: str, *, with_: str) -> Volume:
        from rnx.client.volume import Volume

        answer = self._call("DELETE", f"/v1/volumes/{name}/shares/{quote(with_, safe=':')}")
        return Volume.from_dict(answer, "volume")

    def remove_volume(self, name: str) -> VolumeRemoved:
        from rnx.client.volume import VolumeRemoved

        answer = self._call("DELETE", f"/v1/volumes/{name}")
        return VolumeRemoved.from_dict(answer, "removed volume")

    # -- networks ---------------------------------------------------------------------------

    def create_network(self, name: str, cidr: str, *, internal: bool = False) -> Network:
        from rnx.client.network import Network

        body = {"name": name, "cidr": cidr, "internal": internal}
        return Network.from_dict(self._call("POST", "/v1/networks", body=body), "network")

    def networks(self) -> builtins.list[Network]:
        """Every network with its CIDR and the live jobs on it."""
        from rnx.client.network import Network

        listing = Fields(self._call("GET", "/v1/networks"), "")
        return [Network.read(network) for network in listing.objs("networks")]

    def network(self, name: str) -> Network:
        from rnx.client.network import Network

        return Network.from_dict(self._call("GET", f"/v1/networks/{name}"), "network")

    def share_network(self, name: str, *, with_: str, read_only: bool = False) -> Network:
        """with_: NAME (of the caller's own kind), cert:NAME or unix:NAME; read_only: its jobs
        there keep their default hostnames (no --name on it)."""
        from rnx.client.network import Network

        path = f"/v1/networks/{name}/shares/{quote(with_, safe=':')}"
        answer = self._call("PUT", path, body={"read_only": read_only})
        return Network.from_dict(answer, "network")

    def unshare_network(self, name: str, *, with_: str) -> Network:
        from rnx.client.network import Network

        answer = self._call("DELETE", f"/v1/networks/{name}/shares/{quote(with_, safe=':')}")
        return Network.from_dict(answer, "network")

    def remove_network(self, name: str) -> NetworkRemoved:
        from rnx.client.network import NetworkRemoved

        answer = self._call("DELETE", f"/v1/networks/{name}")
        return NetworkRemoved.from_dict(answer, "removed network")

    # -- runtimes ---------------------------------------------------------------------------

    def runtimes(self) -> RuntimeList:
        """What the agent has installed, and its host's architecture."""
        from rnx.client.runtime import RuntimeList

        return RuntimeList.from_dict(self._call("GET", "/v1/runtimes"), "runtimes")

    def runtime(self, name: str) -> Runtime:
        """One installed runtime in detail: where it is, who uses it, where it came from."""
        from rnx.client.runtime import Runtime

        return Runtime.from_dict(self._call("GET", f"/v1/runtimes/{name}"), "runtime")

    def install_runtime(
        self,
        name: str,
        chunks: Iterable[bytes],
        *,
        size: int,
        sha256: str,
        registry: str | None = None,
        archive: str | None = None,
        insecure: bool = False,
    ) -> Runtime:
        """Stream an archive (already checked against size and the registry index's sha256) to
        the agent, which checks it again, unpacks it safely and moves it into place. registry
        and archive (URLs or paths) are recorded with the runtime; insecure says they may be
        plain http://, which the agent allows admins only."""
        from rnx.client.runtime import Runtime

        query = {"size": str(size), "sha256": sha256}
        query |= {k: v for k, v in (("registry", registry), ("archive", archive)) if v}
        if insecure:
            query["insecure"] = "1"
        path = f"/v1/runtimes/{name}?" + urlencode(query)
        answer = self._put_stream(path, chunks, content_type="application/octet-stream")
        return Runtime.from_dict(answer, "runtime")

    def remove_runtime(self, name: str) -> RuntimeRemoved:
        from rnx.client.runtime import RuntimeRemoved

        answer = self._call("DELETE", f"/v1/runtimes/{name}")
        return RuntimeRemoved.from_dict(answer, "removed runtime")

    def test_runtime(self, name: str) -> Job:
        """Starts the runtime's smoke test as a job; returns the job (follow it with events)."""
        answer = self._call("POST", f"/v1/runtimes/{name}/test")
        return Job.from_dict(answer, "job")

    def validate_runtime(self, text: str) -> RuntimeValidation:
        """Check a runtime.yml's text; an invalid one is an RnxError("invalid") naming the field."""
        from rnx.client.runtime import RuntimeValidation

        answer = self._call("POST", "/v1/runtimes/validate", body={"text": text})
        return RuntimeValidation.from_dict(answer, "validation")

    # -- the agent --------------------------------------------------------------------------

    def health(self) -> Health:
        from rnx.client.health import Health

        return Health.from_dict(self._call("GET", "/v1/health"), "health")


def _job_body(
    command: Sequence[str],
    *,
    relax: Sequence[str] = (),
    volumes: Sequence[str] = (),
    allow_egress: Sequence[str] = (),
    priority: int | None = None,
    limits: dict[str, Any],
    **fields: Any,
) -> dict[str, Any]:
    """A JobRequest: what is given of it (empty values left out)."""
    body: dict[str, Any] = {"command": command[0], "args": list(command[1:])}
    given = {
        **fields,
        "relax": list(relax),
        "volumes": [_volume_mount(v) for v in volumes],
        "allow_egress": list(allow_egress),
    }
    body.update({key: value for key, value in given.items() if value})
    if priority is not None:
        body["priority"] = priority
    if limits:
        body["limits"] = limits
    return body


def _volume_mount(text: str) -> dict[str, Any]:
    """NAME or NAME:ro (NAME:rw also), as --volume takes it."""
    name, sep, mode = text.partition(":")
    if sep and mode not in ("ro", "rw"):
        raise RnxError("invalid", f"--volume: {text!r} is not valid; NAME, NAME:ro or NAME:rw")
    return {"name": name, "read_only": mode == "ro"}
