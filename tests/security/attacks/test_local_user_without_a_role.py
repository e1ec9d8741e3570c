"""A local user without a role (the socket is 0666: any local account can connect) gets nothing:
no job started, no job listed, not even whether an id prefix names a job (review L5)."""

from __future__ import annotations

import json
import subprocess

from rnx.client import Client
from tests.integration.conftest import wait_state
from tests.security.attacks.conftest import another_user_runs_a_job

# Runs as nobody with the host's python3 (the project's venv lives under /root, which nobody may
# not enter): one request over the local socket, printing the status and the answer's code.
ASK = """
import http.client, json, socket, sys
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect("/run/joblet/joblet.sock")
method, path = sys.argv[1], sys.argv[2]
body = sys.argv[3] if len(sys.argv) > 3 else None
c = Unix("joblet")
c.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
r = c.getresponse()
data = r.read()
code = json.loads(data).get("code") if data.startswith(b"{") else None
print(json.dumps({"status": r.status, "code": code}))
"""


def as_nobody(method: str, path: str, body: str | None = None) -> dict[str, object]:
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         "/usr/bin/python3", "-c", ASK, method, path, *([body] if body else [])],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return dict(json.loads(proc.stdout))


def test_a_local_user_without_a_role_gets_nothing(client: Client) -> None:
    job = client.run(["sleep", "30"])
    try:
        wait_state(client, job.id, "RUNNING")
        answers = {
            "run": as_nobody("POST", "/v1/jobs", json.dumps({"command": "true"})),
            "list": as_nobody("GET", "/v1/jobs"),
            "get by prefix": as_nobody("GET", f"/v1/jobs/{job.id[:4]}"),
            "get unknown": as_nobody("GET", "/v1/jobs/ffff"),
            "stop": as_nobody("POST", f"/v1/jobs/{job.id}/stop"),
            "logs": as_nobody("GET", f"/v1/jobs/{job.id}/logs?follow=0"),
        }
        # The same answer whether or not a job has that prefix: a role is checked first.
        assert all(a == {"status": 403, "code": "forbidden"} for a in answers.values()), answers
        assert client.get(job.id).state == "RUNNING"
        another_user_runs_a_job()
    finally:
        client.stop(job.id)
