"""A reader, or a developer, reading another owner's job (security-audit M3).

Everyone with a role sees every job's state and resources; another owner's environment values,
arguments and output only a maintainer or an admin (docs/roles.md). Every read of a job's
output, allowed or refused, leaves an audit entry like a write does."""

from __future__ import annotations

import json

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.conftest import wait_state
from tests.security.attacks.identities import audit_entries, certificate_name, now_for_journal

pytestmark = pytest.mark.integration

SECRET_ENV, SECRET_ARG, SECRET_OUT = "env-s3cret", "arg-s3cret", "out-s3cret"


def test_others_see_a_jobs_state_and_resources_but_not_its_arguments_environment_or_output(
    certs: dict[str, str], client: Client
) -> None:
    since = now_for_journal()
    with Client(config=certs["developer2"]) as owner:
        job = owner.run(
            ["sh", "-c", f"echo {SECRET_OUT}; : {SECRET_ARG}; sleep 60"],
            env={"TOKEN": SECRET_ENV},
            memory_bytes="64M",
        )
    try:
        wait_state(client, job.id, "RUNNING")
        for role in ("reader", "developer"):
            with Client(config=certs[role]) as other:
                seen = other.get(job.id)
                assert (seen.state, seen.spec.limits.memory_bytes) == ("RUNNING", 64 << 20)
                listed = [j for j in other.list(state="RUNNING") if j.id == job.id]
                for shown in (seen, *listed):
                    text = json.dumps(shown.to_dict())
                    for secret in (SECRET_ENV, SECRET_ARG, SECRET_OUT):
                        assert secret not in text, (role, secret, text)
                    assert shown.spec.env == {"TOKEN": "***"}
                    assert shown.redacted
                assert other.metrics(job.id).state == "RUNNING"
                with pytest.raises(RnxError) as refused:
                    list(other.logs(job.id, follow=False))
                assert refused.value.status == 403, refused.value
        with Client(config=certs["developer2"]) as owner:  # the owner sees it all
            mine = owner.get(job.id)
            assert (mine.spec.env, mine.redacted) == ({"TOKEN": SECRET_ENV}, False)
            assert list(owner.logs(job.id, follow=False)) == [SECRET_OUT]
        with Client(config=certs["maintainer"]) as maintainer:  # so do maintainers and admins
            assert maintainer.get(job.id).spec.env == {"TOKEN": SECRET_ENV}
            assert list(maintainer.logs(job.id, follow=False)) == [SECRET_OUT]
    finally:
        client.stop(job.id)
    logs = "GET /v1/jobs/{id}/logs"
    for role, decision in (
        ("reader", "refused"),
        ("developer", "refused"),
        ("developer2", "allowed"),
        ("maintainer", "allowed"),
    ):
        caller = f"cert:{certificate_name(certs[role])}"
        # This job's entries only: the same caller may read its own jobs' logs in the same second.
        entries = audit_entries(since, AUDIT_CALLER=caller, AUDIT_ACTION=logs, JOB_ID=job.id)
        assert [(e["AUDIT_DECISION"], e.get("JOB_ID")) for e in entries] == [(decision, job.id)], (
            role,
            entries,
        )
