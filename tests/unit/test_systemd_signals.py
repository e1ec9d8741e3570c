"""Signals from PID 1 are believed only from its unique bus name (audit L6): any local client may
send a unicast signal to the agent's connection, which no match rule filters."""

from __future__ import annotations

import asyncio
from typing import Any

from dbus_next import Message, MessageType

from joblet_agent.adapters.systemd_dbus import BUS, BUS_PATH, MANAGER, MANAGER_PATH, SystemdBus
from joblet_agent.ports import JobDone, UnitGone

PID1 = ":1.0"
UNIT = "joblet-0123.service"


def _bus() -> tuple[SystemdBus, list[JobDone | UnitGone]]:
    seen: list[JobDone | UnitGone] = []
    bus = SystemdBus(bus=None, unit_prefixes=("joblet-",))
    bus._handler = seen.append
    bus._pid1 = PID1
    return bus, seen


def _signal(sender: str, member: str, signature: str, body: list[Any], **kw: str) -> Message:
    msg = Message(
        message_type=MessageType.SIGNAL,
        path=kw.get("path", MANAGER_PATH),
        interface=kw.get("interface", MANAGER),
        member=member,
        signature=signature,
        body=body,
    )
    msg.sender = sender
    return msg


def _job_removed(sender: str, **kw: str) -> Message:
    return _signal(sender, "JobRemoved", "uoss", [7, "/job/7", UNIT, "done"], **kw)


def test_pid1s_signals_are_handled() -> None:
    bus, seen = _bus()
    bus._on_message(_job_removed(PID1))
    bus._on_message(_signal(PID1, "UnitRemoved", "so", [UNIT, "/unit/x"]))
    assert seen == [JobDone(UNIT, "done"), UnitGone(UNIT)]


def test_a_forged_signal_from_another_client_is_ignored() -> None:
    bus, seen = _bus()
    bus._on_message(_job_removed(":1.42"))
    bus._on_message(_signal(":1.42", "UnitRemoved", "so", [UNIT, "/unit/x"]))
    bus._on_message(_job_removed(PID1, path="/org/freedesktop/systemd1/other"))
    bus._on_message(_job_removed(PID1, interface="org.example.Manager"))
    assert seen == []


def test_a_forged_signal_never_ends_a_waiting_helper() -> None:
    bus, _seen = _bus()

    async def check() -> None:
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        bus._waiting[UNIT] = done
        bus._on_message(_job_removed(":1.42"))
        assert not done.done()
        bus._on_message(_job_removed(PID1))
        assert done.result() == "done"

    asyncio.run(check())


def test_pid1s_new_name_after_a_reexec_is_believed_and_only_from_the_bus() -> None:
    bus, seen = _bus()
    changed = ["org.freedesktop.systemd1", PID1, ":1.99"]
    forged = _signal(":1.42", "NameOwnerChanged", "sss", changed, path=BUS_PATH, interface=BUS)
    bus._on_message(forged)
    bus._on_message(_job_removed(":1.99"))
    assert seen == []
    bus._on_message(_signal(BUS, "NameOwnerChanged", "sss", changed, path=BUS_PATH, interface=BUS))
    bus._on_message(_job_removed(":1.99"))
    bus._on_message(_job_removed(PID1))
    assert seen == [JobDone(UNIT, "done")]
