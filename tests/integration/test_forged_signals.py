"""A signal that claims to be PID 1's but comes from another bus client changes nothing
(audit L6): the agent believes only the unique name owning org.freedesktop.systemd1. Any local
client may send a unicast signal to the agent's connection; no match rule filters those."""

from __future__ import annotations

import subprocess
import sys

from rnx.client import Client
from tests.integration.conftest import sh

# Another client of the system bus: finds the agent's connection by its PID and sends it
# systemd's JobRemoved for the job's unit, "done" (its start job finished), from its own name.
FORGER = """
import asyncio, sys
from dbus_next import BusType, Message, MessageType
from dbus_next.aio import MessageBus

async def main(pid, unit):
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    def call(member, sig, body):
        return bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member=member, signature=sig, body=body))
    names = (await call("ListNames", "", [])).body[0]
    agent = None
    for name in names:
        if name.startswith(":"):
            reply = await call("GetConnectionUnixProcessID", "s", [name])
            if reply.message_type == MessageType.METHOD_RETURN and reply.body[0] == pid:
                agent = name
    assert agent, "the agent has no bus connection"
    await bus.send(Message(message_type=MessageType.SIGNAL, destination=agent,
        path="/org/freedesktop/systemd1", interface="org.freedesktop.systemd1.Manager",
        member="JobRemoved", signature="uoss", body=[4242, "/org/freedesktop/systemd1/job/4242",
        unit, "done"]))
    # The bus has routed the signal to the agent's connection once it answers a later call.
    await call("GetId", "", [])
    print(bus.unique_name)

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


def test_a_forged_job_removed_never_makes_a_scheduled_job_running(client: Client) -> None:
    job = client.run(["true"], schedule="1h")
    assert job.state == "SCHEDULED"
    pid = sh("systemctl", "show", "-P", "MainPID", "joblet.service").strip()
    sent = subprocess.run(
        [sys.executable, "-c", FORGER, pid, job.unit],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    forger = sent.stdout.strip()
    assert forger.startswith(":"), sent
    # The bus may not call the agent (its policy), so: a request that has the agent call PID 1
    # (a second job's timer); its reply follows the signal on the agent's connection, and
    # dbus-next reads them in order: the signal was handled before.
    second = client.run(["true"], schedule="1h")
    try:
        after = client.get(job.id)
        assert after.state == "SCHEDULED", (forger, after.state)
    finally:
        client.cancel(job.id)
        client.cancel(second.id)
