"""PrivateIPC=yes (docs/security.md "Who it is"), by effect: a System V message queue one job
makes is found by that job and by no other job, nor by the host. ENOENT (not there) rather than
EACCES (there, but another user's) is what a namespace of its own gives."""

from __future__ import annotations

import ctypes
import errno
import time

from rnx.client import Client
from tests.integration.conftest import wait_state

KEY = 0x4A0B1E7  # the queue's key, the same in every job

# msgget(KEY, flags): prints "found" or the errno's name; with `make`, creates it (0600) and
# keeps it while the job sleeps.
_QUEUE = f"""
import ctypes, errno, sys, time
libc = ctypes.CDLL(None, use_errno=True)
flags = 0o1600 if sys.argv[1] == "make" else 0  # IPC_CREAT | 0600
ok = libc.msgget({KEY}, flags) >= 0
print("found" if ok else errno.errorcode[ctypes.get_errno()], flush=True)
if sys.argv[1] == "make":
    print("again", "found" if libc.msgget({KEY}, 0) >= 0 else ctypes.get_errno(), flush=True)
    time.sleep(60)
"""


def test_a_jobs_ipc_objects_are_its_own(client: Client) -> None:
    maker = client.run(["python3", "-c", _QUEUE, "make"])
    try:
        deadline = time.monotonic() + 30
        while len(lines := list(client.logs(maker.id, follow=False))) < 2:
            assert time.monotonic() < deadline, lines
            time.sleep(0.1)
        assert lines == ["found", "again found"], lines  # made, and seen by its maker
        other = client.run(["python3", "-c", _QUEUE, "look"])
        assert wait_state(client, other.id, "COMPLETED").exit_code == 0
        assert list(client.logs(other.id, follow=True)) == ["ENOENT"]
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.msgget(KEY, 0) == -1 and ctypes.get_errno() == errno.ENOENT  # nor the host
    finally:
        client.stop(maker.id)
