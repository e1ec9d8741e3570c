"""All D-Bus traffic with PID 1, through dbus-next. The only module that imports dbus_next.

Low-level messages rather than introspected proxies: one round trip per call, and the property
signatures come from our own table (units/properties.py), not from introspection at run time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from dbus_next import BusType, Message, MessageType, Variant
from dbus_next.aio import MessageBus

from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import JobDone, UnitGone
from joblet_agent.units.properties import Property

logger = logging.getLogger(__name__)

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
TIMER_IFACE = "org.freedesktop.systemd1.Timer"
PROPERTIES = "org.freedesktop.DBus.Properties"
UNIT_PATH_PREFIX = "/org/freedesktop/systemd1/unit/"
BUS = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"


def unit_path(unit: str) -> str:
    """sd_bus_path_encode: every byte outside [A-Za-z0-9] (and a leading digit) becomes _XX."""
    out = []
    for index, char in enumerate(unit):
        if char.isascii() and (char.isalpha() or (char.isdigit() and index > 0)):
            out.append(char)
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode())
    return UNIT_PATH_PREFIX + "".join(out)


EventHandler = Callable[[JobDone | UnitGone], None]
Aux = Sequence[tuple[str, Sequence[Property]]]


class SystemdBus:
    """The system bus connection to PID 1, with signals delivered to one handler, but for those
    of units started by run(), which go to their waiter."""

    def __init__(self, bus: MessageBus, unit_prefixes: tuple[str, ...]) -> None:
        self._bus = bus
        self._prefixes = unit_prefixes
        self._handler: EventHandler | None = None
        self._pid1: str | None = None  # PID 1's unique bus name: the only sender we believe
        self._waiting: dict[str, asyncio.Future[str]] = {}

    @classmethod
    async def connect(cls, unit_prefixes: tuple[str, ...], handler: EventHandler) -> SystemdBus:
        """Signals about units whose names start with one of `unit_prefixes` go to `handler`."""
        try:
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except (OSError, Exception) as exc:
            raise JobletError(
                ErrorCode.SYSTEMD,
                f"cannot connect to the D-Bus system bus: {exc}",
                hint="is systemd running as PID 1 with dbus? (tests/sandbox/sandbox up)",
            ) from exc
        # dbus-next 0.2.3 treats a full socket buffer (EAGAIN from send) as a fatal error and
        # drops the whole connection; with many jobs starting at once that happened here. A
        # send that would block now sends nothing, and the writer waits to be writable again.
        bus._writer.sock = _PatientSocket(bus._writer.sock)
        self = cls(bus, unit_prefixes)
        self._handler = handler
        bus.add_message_handler(self._on_message)
        # Match rules before Subscribe and before any unit is started: no signal can be missed.
        # Only the two small Manager signals: a unit's PropertiesChanged signals are many and big
        # (about 30 per job, each decoded in pure Python by dbus-next: ~15 ms of CPU per job);
        # a job's end is a JobRemoved of its joblet-ended@ target (units/translate.py).
        # NameOwnerChanged: PID 1's unique name changes when it re-executes.
        for rule in (
            f"type='signal',sender='{SYSTEMD}',interface='{MANAGER}',member='JobRemoved'",
            f"type='signal',sender='{SYSTEMD}',interface='{MANAGER}',member='UnitRemoved'",
            f"type='signal',sender='{BUS}',interface='{BUS}',member='NameOwnerChanged',"
            f"arg0='{SYSTEMD}'",
        ):
            await self._call(BUS, BUS_PATH, BUS, "AddMatch", signature="s", body=[rule])
        (self._pid1,) = await self._call(
            BUS, BUS_PATH, BUS, "GetNameOwner", signature="s", body=[SYSTEMD]
        )
        await self._manager("Subscribe", "", [])
        logger.debug("subscribed to systemd signals for %s", unit_prefixes)
        return self

    def disconnect(self) -> None:
        self._bus.disconnect()

    # -- signals --------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> bool:
        if msg.message_type != MessageType.SIGNAL or self._handler is None:
            return False
        if msg.sender == BUS and msg.member == "NameOwnerChanged" and msg.path == BUS_PATH:
            name, _old, new = msg.body
            if name == SYSTEMD and new:
                self._pid1 = new
            return False
        # Any local user may send a unicast signal to our connection, which no match rule
        # filters: a forged JobRemoved must not pass for PID 1's.
        if msg.sender != self._pid1 or msg.path != MANAGER_PATH or msg.interface != MANAGER:
            return False
        event: JobDone | UnitGone | None = None
        if msg.member == "JobRemoved":
            _id, _job, unit, result = msg.body
            waiter = self._waiting.pop(unit, None)
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(result)
            elif unit.startswith(self._prefixes):
                event = JobDone(unit, result)
        elif msg.member == "UnitRemoved":
            unit, _path = msg.body
            if unit.startswith(self._prefixes):
                event = UnitGone(unit)
        if event is not None:
            self._handler(event)
        return False

    # -- calls ------------------------------------------------------------------------------

    async def _call(
        self, dest: str, path: str, iface: str, member: str, *, signature: str, body: list[Any]
    ) -> list[Any]:
        reply = await self._bus.call(
            Message(
                destination=dest,
                path=path,
                interface=iface,
                member=member,
                signature=signature,
                body=body,
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            detail = reply.body[0] if reply.body else ""
            raise DBusCallError(reply.error_name or "unknown", str(detail))
        return list(reply.body)

    async def _manager(self, member: str, signature: str, body: list[Any]) -> list[Any]:
        return await self._call(
            SYSTEMD, MANAGER_PATH, MANAGER, member, signature=signature, body=body
        )

    async def start_transient(
        self, unit: str, properties: Sequence[Property], *, aux: Aux = ()
    ) -> None:
        """Starts `unit`; `aux` are transient units created with it in the same call, which it
        may require (a job's network helper), started by PID 1 as its dependencies say."""
        logger.debug("StartTransientUnit %s (%d properties)", unit, len(properties))
        try:
            await self._manager(
                "StartTransientUnit",
                "ssa(sv)a(sa(sv))",
                [unit, "fail", _variants(properties), [[n, _variants(p)] for n, p in aux]],
            )
        except DBusCallError as exc:
            raise JobletError(ErrorCode.SYSTEMD, f"systemd refused to start {unit}: {exc}") from exc

    async def run(
        self, unit: str, properties: Sequence[Property], *, within: float, aux: Aux = ()
    ) -> str:
        """Starts a transient unit (a oneshot helper) and returns its start job's result once
        PID 1 reports it ("done", "failed", ...): the one way to await a unit's work, no polling.
        The waiter is registered before the start, so the signal cannot be missed."""
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[unit] = done
        try:
            await self.start_transient(unit, properties, aux=aux)
            return await asyncio.wait_for(done, within)
        except TimeoutError:
            raise JobletError(
                ErrorCode.SYSTEMD,
                f"{unit} did not finish within {within:g} s",
                hint=f"journalctl -u {unit}",
            ) from None
        finally:
            self._waiting.pop(unit, None)

    async def set_properties(self, unit: str, properties: Sequence[Property]) -> None:
        """SetUnitProperties(runtime): limits of a running unit. A unit gone meanwhile is fine."""
        try:
            await self._manager("SetUnitProperties", "sba(sv)", [unit, True, _variants(properties)])
        except DBusCallError as exc:
            if exc.name not in _GONE:
                raise JobletError(ErrorCode.SYSTEMD, f"cannot set limits of {unit}: {exc}") from exc

    async def stop(self, unit: str, *, within: float | None = None) -> None:
        """StopUnit; with `within`, returns once the stop is done (its JobRemoved). A unit that
        is not loaded is stopped already."""
        done: asyncio.Future[str] | None = None
        if within is not None:
            done = asyncio.get_running_loop().create_future()
            self._waiting[unit] = done
        try:
            try:
                await self._manager("StopUnit", "ss", [unit, "replace"])
            except DBusCallError as exc:
                if exc.name != "org.freedesktop.systemd1.NoSuchUnit":
                    raise JobletError(ErrorCode.SYSTEMD, f"cannot stop {unit}: {exc}") from exc
                return
            if done is not None:
                await asyncio.wait_for(done, within)
        finally:
            if done is not None:
                self._waiting.pop(unit, None)

    async def reset_failed(self, unit: str) -> None:
        """Forget a failed unit (a transient one is then unloaded), so its name can be reused."""
        try:
            await self._manager("ResetFailedUnit", "s", [unit])
        except DBusCallError as exc:
            if exc.name != "org.freedesktop.systemd1.NoSuchUnit":
                raise JobletError(ErrorCode.SYSTEMD, f"cannot reset {unit}: {exc}") from exc

    async def freeze(self, unit: str) -> None:
        """FreezeUnit, answered once the unit is frozen. systemd freezes with cgroup v2's
        freezer only: on a hybrid or v1 host every unit "does not support freezing"."""
        await self._freezer("FreezeUnit", unit, "pause")

    async def thaw(self, unit: str) -> None:
        await self._freezer("ThawUnit", unit, "resume")

    async def _freezer(self, member: str, unit: str, doing: str) -> None:
        try:
            await self._manager(member, "s", [unit])
        except DBusCallError as exc:
            if exc.name == "org.freedesktop.DBus.Error.NotSupported" or "support" in str(exc):
                raise JobletError(
                    ErrorCode.UNSUPPORTED,
                    f"cannot {doing} {unit}: systemd freezes units with the cgroup v2 freezer "
                    f"only, and says: {exc}",
                    hint="hosts booted with cgroup v2 alone (the default of Debian 11 and "
                    "later) can pause jobs; hybrid and v1 hosts cannot",
                ) from exc
            if exc.name in _GONE:
                raise JobletError(ErrorCode.CONFLICT, f"cannot {doing} {unit}: it ended") from exc
            raise JobletError(ErrorCode.SYSTEMD, f"cannot {doing} {unit}: {exc}") from exc

    async def unit_properties(
        self, unit: str, *, interfaces: tuple[str, ...] = (UNIT_IFACE, SERVICE_IFACE)
    ) -> dict[str, Any] | None:
        """Current properties (of a service, by default), or None if no such unit is loaded."""
        path = unit_path(unit)
        result: dict[str, Any] = {}
        try:
            for iface in interfaces:
                (values,) = await self._call(
                    SYSTEMD, path, PROPERTIES, "GetAll", signature="s", body=[iface]
                )
                result.update({k: v.value for k, v in values.items()})
        except DBusCallError as exc:
            if exc.name in (
                "org.freedesktop.DBus.Error.UnknownObject",
                "org.freedesktop.systemd1.NoSuchUnit",
                "org.freedesktop.DBus.Error.UnknownInterface",
            ):
                return None
            raise JobletError(ErrorCode.SYSTEMD, f"cannot read {unit}: {exc}") from exc
        if result.get("LoadState") == "not-found":
            return None
        return result

    async def active_state(self, unit: str) -> str | None:
        """The unit's ActiveState, for any kind of unit; None if it is not loaded."""
        props = await self.unit_properties(unit, interfaces=(UNIT_IFACE,))
        return str(props["ActiveState"]) if props else None

    async def timer_properties(self, unit: str) -> dict[str, Any] | None:
        """A timer's properties, or None if it is not loaded."""
        return await self.unit_properties(unit, interfaces=(UNIT_IFACE, TIMER_IFACE))

    async def list_units(self, pattern: str) -> list[tuple[str, str]]:
        """(unit, active state) of every loaded unit matching the glob."""
        (units,) = await self._manager("ListUnitsByPatterns", "asas", [[], [pattern]])
        return [(u[0], u[3]) for u in units]


_GONE = (
    "org.freedesktop.systemd1.NoSuchUnit",
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.systemd1.UnitInactive",
)


def _variants(properties: Sequence[Property]) -> list[list[Any]]:
    return [[p.name, Variant(p.signature, p.value)] for p in properties]


class DBusCallError(Exception):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{detail} ({name})")
        self.name = name


class _PatientSocket:
    """The bus socket for dbus-next's writer, with EAGAIN turned into 'sent 0 bytes'."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def send(self, data: bytes) -> int:
        try:
            return int(self._sock.send(data))
        except BlockingIOError:
            return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
