"""Every operation of docs/openapi.yaml, as every role, over mutual TLS to the real agent.

The operations, their least roles (`x-joblet-role`) and their success statuses come from the
document; a cell is allowed only when the agent answers that success status (201 for a create,
200 otherwise), and refused only on a 403 `forbidden`. A transport failure, a 404, a 400 or a 500
counts as neither. What each operation acts on is made fresh for its cell (`RECIPES`, one per
operationId): a route the document gains without a recipe fails `test_every_route_has_a_recipe`.

Scopes: a job's logs, stop, cancel and delete, a schedule's pause, resume and delete, and a volume's
or a network's reading, removal and
shares need its owner (or, for reading a volume or a network, a share with the caller) or a
maintainer (`owner` is developer2 on its own job and volume, and on a network shared with it); an
upload is its announcer's alone (anyone else, admins included, gets 404, as if it
did not exist). A refused cell leaves its target as it was (`intact`). Every mutating request
and every log read sent here, the recipes' own included, leaves exactly one audit entry with its
caller, role, action and the status answered (`test_every_mutating_request_left_one_audit_entry`,
last in the module).
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import io
import itertools
import json
import ssl
import tarfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from joblet_agent.pki.store import Pki
from rnx.client import Client
from tests.integration.conftest import sh, wait_state
from tests.integration.test_control_plane import ADDRESS, pki  # noqa: F401 (fixture)
from tests.runtime_kit import runtime_archive
from tests.unit.test_openapi import METHODS, document

ROLES = ("reader", "developer", "maintainer", "admin")
MUTATING = ("POST", "PUT", "PATCH", "DELETE")
WEBSOCKET_HANDSHAKE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def audited_read(template: str) -> bool:
    """A job's output and files: reads audited like writes (api/audit.py AUDITED_READS)."""
    return template.endswith("/logs") or template.startswith("/v1/jobs/{id}/files")


SOCKET = "/run/joblet/joblet.sock"
ENDED = ("COMPLETED", "FAILED", "STOPPED", "CANCELED", "TIMEOUT")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    id: str
    role: str
    success: int


def operations() -> list[Operation]:
    found = []
    for path, item in document()["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                # 101: a WebSocket's (exec, attach)
                success = min(int(s) for s in op["responses"] if 101 <= int(s) < 300)
                found.append(
                    Operation(method.upper(), path, op["operationId"], op["x-joblet-role"], success)
                )
    return found


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with its query
    body: bytes | None = None
    content_type: str = "application/json"
    websocket: bool = False  # a WebSocket's opening handshake (exec, attach): 101 if allowed

    @classmethod
    def json(cls, method: str, path: str, body: Any = None) -> Request:
        return cls(method, path, None if body is None else json.dumps(body).encode())


@dataclass(frozen=True)
class Sent:
    caller: str  # as the audit names it: cert:NAME
    role: str
    action: str  # as the audit names it: "POST /v1/jobs/{id}/stop"
    status: int


class Https:
    """One certificate's raw requests: the exact status, nothing of rnx's reading in between.
    A connection that fails raises (it is not an answer)."""

    def __init__(self, config: Path, log: list[Sent]) -> None:
        bundle = config.parent
        self.context = ssl.create_default_context(cafile=str(bundle / "ca.crt"))
        self.context.load_cert_chain(str(bundle / "client.crt"), str(bundle / "client.key"))
        subject = x509.load_pem_x509_certificate((bundle / "client.crt").read_bytes()).subject
        self.name = str(subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        self.role = str(subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value)
        self.log = log

    def send(self, request: Request, template: str) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("localhost", 50051, context=self.context, timeout=90)
        try:
            headers = {"Content-Type": request.content_type} if request.body is not None else {}
            if request.websocket:
                headers |= WEBSOCKET_HANDSHAKE
            conn.request(request.method, request.path, body=request.body, headers=headers)
            response = conn.getresponse()
            # A 101's body is the WebSocket's frames: hung up unread (the agent's end of it
            # sees the caller gone, as when rnx is interrupted).
            raw = b"" if response.status == 101 else response.read()
        finally:
            conn.close()
        if request.method in MUTATING or request.websocket or audited_read(template):
            action = f"{request.method} {template}"
            self.log.append(Sent(f"cert:{self.name}", self.role, action, response.status))
        if response.headers.get("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(raw)
        return response.status, raw.decode(errors="replace")

    def ok(self, request: Request, template: str, status: int = 200) -> Any:
        got, answer = self.send(request, template)
        assert got == status, (request, got, answer)
        return answer


# -- what the cells act on ----------------------------------------------------------------------


@dataclass
class World:
    """The callers, and what the module's read cells share."""

    callers: dict[str, Https]  # per role, and "owner" (a second developer)
    admin: Client  # root over the local socket: setup and clean-up (not in the audit check)
    tmp: Path
    sent: list[Sent]
    job: str = ""  # a running job of the owner's
    volume: str = ""
    network: str = ""
    runtime: str = ""
    schedule: str = ""
    subnets: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def owner(self) -> Https:
        return self.callers["owner"]


@dataclass
class Cell:
    request: Request
    intact: Callable[[], None] = lambda: None  # asserts the target is as it was (refused cells)
    answered: Callable[[int, Any], None] = lambda status, answer: None  # e.g. drop what it made
    allowed: int | None = None  # what an allowed cell gets, if not the success status (below)


# Each recipe makes what its operation acts on and returns the request; `caller` is the cell's;
# what must be undone goes on `undo` (run whatever the cell's outcome).
Recipe = Callable[[World, Https, contextlib.ExitStack], Cell]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def owners_job(world: World, command: list[str]) -> str:
    body = {"command": command[0], "args": command[1:]}
    return str(world.owner.ok(Request.json("POST", "/v1/jobs", body), "/v1/jobs", 201)["id"])


def stop_quietly(world: World, job_id: str) -> None:
    if not world.admin.get(job_id).state.ended:
        world.admin.stop(job_id)


def job_is(world: World, job_id: str, state: str) -> Callable[[], None]:
    def check() -> None:
        assert world.admin.get(job_id).state == state

    return check


def jobs_of_end(world: World, owner: str) -> Callable[[], None]:
    """Waits for the jobs `owner` started (`true`, smoke tests) to end."""

    def wait() -> None:
        for job in world.admin.list(owner=f"cert:{owner}"):
            wait_state(world.admin, job.id, *ENDED)

    return wait


@contextlib.contextmanager
def starts_held() -> Iterator[None]:
    """Every job start waits while this holds /dev/loop-control's lock: PID 1's executor takes it
    to attach a job's /work image, so a job submitted meanwhile stays SCHEDULED."""
    with open("/dev/loop-control", "rb") as control:
        fcntl.flock(control, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(control, fcntl.LOCK_UN)


@contextlib.contextmanager
def scheduled_job(world: World) -> Iterator[str]:
    """A job of the owner's that stays SCHEDULED until the context ends (then it starts, unless
    it was canceled, and this waits for its end)."""
    submitted: list[tuple[int, Any]] = []
    request = Request.json("POST", "/v1/jobs", {"command": "true"})
    submit = threading.Thread(
        target=lambda: submitted.append(world.owner.send(request, "/v1/jobs"))
    )
    with starts_held():
        submit.start()
        deadline = time.monotonic() + 30
        while not (
            waiting := world.admin.list(owner=f"cert:{world.owner.name}", state="scheduled")
        ):
            assert time.monotonic() < deadline, "no job of the owner's became SCHEDULED"
            time.sleep(0.05)
        yield waiting[0].id
    submit.join(90)
    assert submitted and submitted[0][0] == 201, submitted
    wait_state(world.admin, waiting[0].id, *ENDED)


UPLOAD_FILE = b"matrix\n"


def tar_of_one_file() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.size = len(UPLOAD_FILE)
        tar.addfile(info, io.BytesIO(UPLOAD_FILE))
    return buffer.getvalue()


def upload_put(upload_id: str) -> Request:
    return Request("PUT", f"/v1/uploads/{upload_id}", tar_of_one_file(), "application/x-tar")


def drop_upload(caller: Https, upload_id: str) -> None:
    caller.send(Request.json("DELETE", f"/v1/uploads/{upload_id}"), "/v1/uploads/{id}")


def owners_upload(world: World, undo: contextlib.ExitStack) -> tuple[str, Callable[[], None]]:
    """An upload announced by the owner, and a check that it is still there (the owner can send
    it): a refused or not-found cell left it alone."""
    body = {"bytes": len(UPLOAD_FILE), "entries": 1}
    upload = str(
        world.owner.ok(Request.json("POST", "/v1/uploads", body), "/v1/uploads", 201)["id"]
    )
    undo.callback(drop_upload, world.owner, upload)

    def still_there() -> None:
        assert world.owner.ok(upload_put(upload), "/v1/uploads/{id}")["id"] == upload

    return upload, still_there


def _gone(listed: Callable[[], set[str]], remove: Callable[[str], object], name: str) -> None:
    if name in listed():
        remove(name)


def undo_volume(world: World, undo: contextlib.ExitStack, name: str) -> None:
    undo.callback(
        _gone, lambda: {v.name for v in world.admin.volumes()}, world.admin.remove_volume, name
    )


def undo_network(world: World, undo: contextlib.ExitStack, name: str) -> None:
    undo.callback(
        _gone, lambda: {n.name for n in world.admin.networks()}, world.admin.remove_network, name
    )


def undo_runtime(world: World, undo: contextlib.ExitStack, name: str) -> None:
    undo.callback(
        _gone,
        lambda: {r.name for r in world.admin.runtimes().runtimes},
        world.admin.remove_runtime,
        name,
    )


def network_body(world: World) -> dict[str, Any]:
    return {"name": unique("mx"), "cidr": f"10.79.{next(world.subnets)}.0/24"}


def fresh_runtime(world: World) -> str:
    name = unique("mxrt")
    data, sha, size = runtime_archive(world.tmp, name)
    world.admin.install_runtime(name, [data], size=size, sha256=sha)
    return name


# -- the recipes ----------------------------------------------------------------------------------


def _create_job(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    undo.callback(jobs_of_end(world, caller.name))
    return Cell(Request.json("POST", "/v1/jobs", {"command": "true"}))


def _delete_all(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    # Only the caller's own ended jobs: the other tests' records stay.
    return Cell(Request.json("DELETE", f"/v1/jobs?owner={caller.name}"))


def _stop(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    job = owners_job(world, ["sleep", "60"])
    undo.callback(stop_quietly, world, job)
    return Cell(Request.json("POST", f"/v1/jobs/{job}/stop"), intact=job_is(world, job, "RUNNING"))


def _cancel(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    job = undo.enter_context(scheduled_job(world))
    return Cell(
        Request.json("POST", f"/v1/jobs/{job}/cancel"), intact=job_is(world, job, "SCHEDULED")
    )


def _delete(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    job = owners_job(world, ["true"])
    wait_state(world.admin, job, "COMPLETED")
    return Cell(Request.json("DELETE", f"/v1/jobs/{job}"), intact=job_is(world, job, "COMPLETED"))


def _announce(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    def answered(status: int, answer: Any) -> None:
        if status == 201:
            undo.callback(drop_upload, caller, answer["id"])

    return Cell(Request.json("POST", "/v1/uploads", {"bytes": 0, "entries": 0}), answered=answered)


def _send(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    upload, still_there = owners_upload(world, undo)
    return Cell(upload_put(upload), intact=still_there)


def _drop(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    upload, still_there = owners_upload(world, undo)
    return Cell(Request.json("DELETE", f"/v1/uploads/{upload}"), intact=still_there)


def _create_volume(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    name = unique("mxv")
    undo_volume(world, undo, name)
    return Cell(
        Request.json("POST", "/v1/volumes", {"name": name, "size": "16M", "type": "memory"})
    )


def owners_volume(world: World, undo: contextlib.ExitStack) -> str:
    name = unique("mxv")
    body = {"name": name, "size": "16M", "type": "memory"}
    world.owner.ok(Request.json("POST", "/v1/volumes", body), "/v1/volumes", 201)
    undo_volume(world, undo, name)
    return name


def shared_with(world: World, kind: str, name: str) -> Callable[[], None]:
    """Checks that the reader's certificate is (still) not among `name`'s shares."""

    def check() -> None:
        found = world.admin.volume(name) if kind == "volumes" else world.admin.network(name)
        assert world.callers["reader"].name not in {s.owner.split(":", 1)[1] for s in found.shares}

    return check


def _share(kind: str, method: str) -> Recipe:
    """PUT or DELETE /v1/{kind}/{name}/shares/{the reader's certificate}: on the owner's own
    volume, or on a network of root's (a share needs a maintainer there anyway)."""

    def recipe(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
        if kind == "volumes":
            name = owners_volume(world, undo)
        else:
            body = network_body(world)
            name = body["name"]
            world.admin.create_network(name, body["cidr"])
            undo_network(world, undo, name)
        who = f"cert:{world.callers['reader'].name}"
        path = f"/v1/{kind}/{name}/shares/{who}"
        if method == "PUT":
            return Cell(
                Request.json("PUT", path, {"read_only": True}),
                intact=shared_with(world, kind, name),
            )
        share = world.admin.share_volume if kind == "volumes" else world.admin.share_network
        share(name, with_=who, read_only=True)

        def still_shared() -> None:
            with pytest.raises(AssertionError):
                shared_with(world, kind, name)()

        return Cell(Request.json("DELETE", path), intact=still_shared)

    return recipe


def _remove_volume(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    name = owners_volume(world, undo)

    def intact() -> None:
        assert name in {v.name for v in world.admin.volumes()}

    return Cell(Request.json("DELETE", f"/v1/volumes/{name}"), intact=intact)


def _create_network(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    body = network_body(world)
    undo_network(world, undo, body["name"])
    return Cell(Request.json("POST", "/v1/networks", body))


def _remove_network(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    body = network_body(world)
    world.admin.create_network(body["name"], body["cidr"])
    undo_network(world, undo, body["name"])

    def intact() -> None:
        assert body["name"] in {n.name for n in world.admin.networks()}

    return Cell(Request.json("DELETE", f"/v1/networks/{body['name']}"), intact=intact)


# A calendar expression that does not elapse while the module runs: no run is made.
SCHEDULE_BODY = {"calendar": "*-01-01 03:00:00", "job": {"command": "true"}}


def _gone_schedule(world: World, schedule_id: str) -> None:
    if schedule_id in {s.id for s in world.admin.schedules()}:
        world.admin.delete_schedule(schedule_id)


def owners_schedule(world: World, undo: contextlib.ExitStack) -> str:
    request = Request.json("POST", "/v1/schedules", SCHEDULE_BODY)
    schedule_id = str(world.owner.ok(request, "/v1/schedules", 201)["id"])
    undo.callback(_gone_schedule, world, schedule_id)
    return schedule_id


def schedule_is(world: World, schedule_id: str, state: str) -> Callable[[], None]:
    def check() -> None:
        assert world.admin.schedule(schedule_id).state == state

    return check


def _create_schedule(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    def answered(status: int, answer: Any) -> None:
        if status == 201:
            undo.callback(_gone_schedule, world, answer["id"])

    return Cell(Request.json("POST", "/v1/schedules", SCHEDULE_BODY), answered=answered)


def _on_schedule(action: str) -> Recipe:
    """DELETE, or POST .../pause or .../resume, on a fresh schedule of the owner's (paused
    first, for resume)."""

    def recipe(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
        schedule_id = owners_schedule(world, undo)
        if action == "resume":
            world.admin.pause_schedule(schedule_id)
        if action == "delete":
            return Cell(
                Request.json("DELETE", f"/v1/schedules/{schedule_id}"),
                intact=schedule_is(world, schedule_id, "ACTIVE"),
            )
        before = "PAUSED" if action == "resume" else "ACTIVE"
        return Cell(
            Request.json("POST", f"/v1/schedules/{schedule_id}/{action}"),
            intact=schedule_is(world, schedule_id, before),
        )

    return recipe


# -- inside a job: exec, files, lifetime -------------------------------------------------------


def _websocket(kind: str) -> Recipe:
    """The opening handshake of an exec or an attach on the owner's running job; an allowed
    caller gets 101 and hangs up before its first message."""

    def recipe(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
        return Cell(Request("GET", f"/v1/jobs/{world.job}/{kind}", websocket=True))

    return recipe


def _read_files(suffix: str) -> Recipe:
    def recipe(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
        return Cell(Request.json("GET", f"/v1/jobs/{world.job}/files{suffix}"))

    return recipe


def _copy_in(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    """The caller's own upload (a reader may have none: a made-up id, refused before it is
    looked for) into the owner's running job."""
    upload = str(uuid.uuid4())
    if caller.role != "reader":
        size = {"bytes": len(tar_of_one_file()), "entries": 1}
        announced = caller.ok(Request.json("POST", "/v1/uploads", size), "/v1/uploads", 201)
        upload = str(announced["id"])
        undo.callback(drop_upload, caller, upload)
        caller.ok(upload_put(upload), "/v1/uploads/{id}")
    body = {"upload": upload, "path": "/work", "name": unique("in")}
    return Cell(Request.json("POST", f"/v1/jobs/{world.job}/files", body))


def _lifetime(action: str) -> Recipe:
    """extend, pause or resume a fresh running job of the owner's. Pause and resume need the
    cgroup v2 freezer: elsewhere (the sandbox is hybrid) an allowed call gets 422, saying so."""

    def recipe(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
        job = owners_job(world, ["sleep", "600"])
        undo.callback(stop_quietly, world, job)
        wait_state(world.admin, job, "RUNNING")
        freezes = world.admin.health().host.cgroup_mode == "unified"
        if action == "resume" and freezes:
            world.admin.pause(job)
        body = {"timeout_sec": "1h"} if action == "extend" else None
        before = "PAUSED" if action == "resume" and freezes else "RUNNING"
        return Cell(
            Request.json("POST", f"/v1/jobs/{job}/{action}", body),
            intact=job_is(world, job, before),
            # resume of a job that is not paused changes nothing (200), frozen or not
            allowed=422 if action == "pause" and not freezes else None,
        )

    return recipe


def _install_runtime(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    name = unique("mxrt")
    data, sha, size = runtime_archive(world.tmp, name)
    undo_runtime(world, undo, name)
    query = f"size={size}&sha256={sha}"
    return Cell(Request("PUT", f"/v1/runtimes/{name}?{query}", data, "application/octet-stream"))


def _remove_runtime(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    name = fresh_runtime(world)
    undo_runtime(world, undo, name)

    def intact() -> None:
        assert world.admin.runtime(name).name == name

    return Cell(Request.json("DELETE", f"/v1/runtimes/{name}"), intact=intact)


def _test_runtime(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    undo.callback(jobs_of_end(world, caller.name))
    return Cell(Request.json("POST", f"/v1/runtimes/{world.runtime}/test"))


def _validate_runtime(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
    return Cell(Request.json("POST", "/v1/runtimes/validate", {"text": "name: x\nversion: '1'\n"}))


def _read(path: str) -> Recipe:
    def recipe(world: World, caller: Https, undo: contextlib.ExitStack) -> Cell:
        names = {
            "job": world.job,
            "volume": world.volume,
            "network": world.network,
            "schedule": world.schedule,
        }
        return Cell(Request.json("GET", path.format(runtime=world.runtime, **names)))

    return recipe


RECIPES: dict[str, Recipe] = {
    "createJob": _create_job,
    "listJobs": _read("/v1/jobs"),
    "deleteAllJobs": _delete_all,
    "getJob": _read("/v1/jobs/{job}"),
    "deleteJob": _delete,
    "stopJob": _stop,
    "cancelJob": _cancel,
    "jobLogs": _read("/v1/jobs/{job}/logs?follow=0"),
    "jobMetrics": _read("/v1/jobs/{job}/metrics"),
    "jobExec": _websocket("exec"),
    "jobAttach": _websocket("attach"),
    "listJobFiles": _read_files(""),
    "readJobFile": _read_files("/content?path=f"),
    "archiveJobDirectory": _read_files("/archive?path=/work"),
    "copyIntoJob": _copy_in,
    "extendJob": _lifetime("extend"),
    "pauseJob": _lifetime("pause"),
    "resumeJob": _lifetime("resume"),
    "announceUpload": _announce,
    "sendUpload": _send,
    "dropUpload": _drop,
    "createVolume": _create_volume,
    "listVolumes": _read("/v1/volumes"),
    "getVolume": _read("/v1/volumes/{volume}"),
    "removeVolume": _remove_volume,
    "shareVolume": _share("volumes", "PUT"),
    "unshareVolume": _share("volumes", "DELETE"),
    "createNetwork": _create_network,
    "listNetworks": _read("/v1/networks"),
    "getNetwork": _read("/v1/networks/{network}"),
    "removeNetwork": _remove_network,
    "shareNetwork": _share("networks", "PUT"),
    "unshareNetwork": _share("networks", "DELETE"),
    "health": _read("/v1/health"),
    "createSchedule": _create_schedule,
    "listSchedules": _read("/v1/schedules"),
    "getSchedule": _read("/v1/schedules/{schedule}"),
    "deleteSchedule": _on_schedule("delete"),
    "pauseSchedule": _on_schedule("pause"),
    "resumeSchedule": _on_schedule("resume"),
    "listRuntimes": _read("/v1/runtimes"),
    "validateRuntime": _validate_runtime,
    "getRuntime": _read("/v1/runtimes/{runtime}"),
    "installRuntime": _install_runtime,
    "removeRuntime": _remove_runtime,
    "testRuntime": _test_runtime,
}
# Acting on one owner's thing: "job" needs the owner (or, for a volume or a network to read, a
# share) or a maintainer; "private" is the owner's alone (anyone else: 404, as for an id that
# does not exist).
SCOPES = {
    "jobLogs": "job",
    "jobExec": "job",
    "jobAttach": "job",
    "listJobFiles": "job",
    "readJobFile": "job",
    "archiveJobDirectory": "job",
    "copyIntoJob": "job",
    "extendJob": "job",
    "pauseJob": "job",
    "resumeJob": "job",
    "getVolume": "job",
    "removeVolume": "job",
    "shareVolume": "job",
    "unshareVolume": "job",
    "getNetwork": "job",
    "deleteSchedule": "job",
    "pauseSchedule": "job",
    "resumeSchedule": "job",
    "stopJob": "job",
    "cancelJob": "job",
    "deleteJob": "job",
    "sendUpload": "private",
    "dropUpload": "private",
}


def expected(op: Operation, role: str) -> int:
    """The status a cell must get: the operation's success status, 403, or 404 (private)."""
    acting = "developer" if role == "owner" else role
    if ROLES.index(acting) < ROLES.index(op.role):
        return 403
    scope = SCOPES.get(op.id)
    if scope == "job" and role != "owner" and ROLES.index(acting) < ROLES.index("maintainer"):
        return 403
    if scope == "private" and role != "owner":
        return 404
    return op.success


CELLS = [
    (op, role) for op in operations() for role in (*ROLES, *(("owner",) if op.id in SCOPES else ()))
]


@pytest.fixture(scope="module")
def world(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:  # noqa: F811
    """Certificates of this module's own (so the audit check sees only its requests), and what
    the read cells share: a running job of the owner's, a volume, a network, a runtime."""
    tmp = tmp_path_factory.mktemp("matrix")
    run = uuid.uuid4().hex[:6]
    sent: list[Sent] = []
    callers = {
        who: Https(
            pki.issue_client(f"mx-{who}-{run}", role, out_dir=tmp / who, address=ADDRESS), sent
        )
        for who, role in [*((r, r) for r in ROLES), ("owner", "developer")]
    }
    with Client(socket=SOCKET) as admin, contextlib.ExitStack() as undo:
        world = World(callers, admin, tmp, sent)
        world.volume, world.network = owners_volume(world, undo), unique("mxn")
        admin.create_network(world.network, "10.79.0.0/24")
        undo_network(world, undo, world.network)
        admin.share_network(world.network, with_=f"cert:{world.owner.name}", read_only=True)
        world.runtime = fresh_runtime(world)
        undo_runtime(world, undo, world.runtime)
        world.schedule = owners_schedule(world, undo)
        # A file of its own to read (files/content): f in its /work.
        world.job = owners_job(world, ["sh", "-c", "echo matrix > f && exec sleep 600"])
        undo.callback(stop_quietly, world, world.job)
        yield world


def test_every_route_has_a_recipe() -> None:
    assert {op.id for op in operations()} == set(RECIPES)
    assert set(SCOPES) <= set(RECIPES)


@pytest.mark.parametrize(("op", "role"), CELLS, ids=[f"{op.id}-{role}" for op, role in CELLS])
def test_cell(world: World, op: Operation, role: str) -> None:
    caller = world.callers[role]
    with contextlib.ExitStack() as undo:
        cell = RECIPES[op.id](world, caller, undo)
        status, answer = caller.send(cell.request, op.path)
        cell.answered(status, answer)
        want = expected(op, role)
        if want == op.success and cell.allowed is not None:
            want = cell.allowed
        assert status == want, (op.method, op.path, role, status, answer)
        if want == 403:
            assert answer["code"] == "forbidden", answer
        elif want == 404:
            assert answer["code"] == "not-found", answer
        if want in (403, 404):
            cell.intact()


def _audit_entries(callers: set[str]) -> Counter[Sent]:
    out = sh(
        "journalctl", "--no-pager", "AUDIT=1", "-o", "json",
        "--output-fields=AUDIT_CALLER,AUDIT_ROLE,AUDIT_ACTION,AUDIT_STATUS",
    )  # fmt: skip
    found: Counter[Sent] = Counter()
    for line in out.splitlines():
        entry = json.loads(line)
        if entry.get("AUDIT_CALLER") in callers:
            sent = Sent(
                entry["AUDIT_CALLER"],
                entry["AUDIT_ROLE"],
                entry["AUDIT_ACTION"],
                int(entry["AUDIT_STATUS"]),
            )
            found[sent] += 1
    return found


def test_every_mutating_request_left_one_audit_entry(world: World) -> None:
    """Last in the module: the callers' certificates are this module's own, so their entries
    are exactly the requests sent above (journald is waited for, at most 15 s)."""
    sent = Counter(world.sent)
    assert len(sent) > 50, sent
    callers = {s.caller for s in sent}
    deadline = time.monotonic() + 15
    while (found := _audit_entries(callers)) != sent and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found == sent, {"missing": sent - found, "extra": found - sent}
