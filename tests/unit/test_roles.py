"""The role table: api/roles.py names an action for every route, the agent refuses every route to
the roles below that action's before its handler runs, and docs/roles.md is what the tables say.

Regenerate docs/roles.md's tables after a change: .venv/bin/python -m tests.unit.test_roles
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Middleware

from joblet_agent.api.errors import Handler
from joblet_agent.api.identity import CALLER
from joblet_agent.api.roles import ROUTE_ACTIONS, action_table, cell, role_table
from joblet_agent.domain.config import Access, AgentConfig
from joblet_agent.domain.rbac import OWN_ONLY, REQUIRED, Action, Caller, Role
from joblet_agent.services.job.service import JobService
from tests.unit.wiring import api_app, job_service

DOC = Path(__file__).parents[2] / "docs" / "roles.md"
_BLOCK = re.compile(r"(<!-- begin (\w+) -->\n)(.*?)(<!-- end \2 -->)", re.S)


def regenerated(text: str) -> str:
    tables = {"routes": role_table(), "actions": action_table()}
    return _BLOCK.sub(lambda m: m.group(1) + tables[m.group(2)] + m.group(4), text)


def routes_of(service: JobService) -> set[tuple[str, str]]:
    app = api_app(service, Access())
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def as_caller(caller: Caller) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[CALLER] = caller
        return await handler(request)

    return middleware


@pytest.fixture
def service(tmp_path: Path) -> JobService:
    return job_service(AgentConfig(state_dir=tmp_path / "state", runtimes_dir=tmp_path / "rt"))


def test_every_route_has_its_actions_and_every_action_a_route(service: JobService) -> None:
    assert routes_of(service) == set(ROUTE_ACTIONS)
    named = {action for actions in ROUTE_ACTIONS.values() for action in actions}
    assert named == set(Action), set(Action) - named
    assert set(REQUIRED) == set(Action)


def test_docs_roles_md_is_the_table_of_the_code() -> None:
    text = DOC.read_text()
    assert len(_BLOCK.findall(text)) == 2
    assert text == regenerated(text), "run: .venv/bin/python -m tests.unit.test_roles"


def test_the_table_says_what_each_role_may() -> None:
    assert cell(Action.JOB_STOP, Role.READER) == "-"
    assert cell(Action.JOB_STOP, Role.DEVELOPER) == "own"
    assert cell(Action.JOB_STOP, Role.MAINTAINER) == "all"
    assert cell(Action.VOLUME_USE, Role.DEVELOPER) == "own+shared"
    assert cell(Action.JOB_RUN, Role.ADMIN) == "yes"
    assert cell(Action.JOB_INSPECT, Role.READER) == "own"
    assert Action.JOB_INSPECT in OWN_ONLY and Action.JOB_READ not in OWN_ONLY


def test_each_route_refuses_the_role_below_its_action_before_its_handler(
    service: JobService,
) -> None:
    """Through aiohttp on a Unix socket, as a certificate of each role in turn (set where
    api/identity.py keeps the caller: the test may run as root, whom the socket makes admin);
    a route's path parameters name nothing that exists and no body is sent: the refusal must
    come first, naming the route's action."""
    cases = [
        (route, actions[0], below)
        for route, actions in ROUTE_ACTIONS.items()
        for below in Role
        if not below.at_least(REQUIRED[actions[0]])
    ]
    assert cases

    async def scenario(socket: str) -> list[str]:
        wrong = []
        for (method, path), action, role in cases:
            app = api_app(service, Access())
            app.middlewares.insert(0, as_caller(Caller("someone", role, "tls")))
            runner = web.AppRunner(app)
            await runner.setup()
            await web.UnixSite(runner, socket).start()
            try:
                async with aiohttp.ClientSession(
                    connector=aiohttp.UnixConnector(path=socket), base_url="http://joblet"
                ) as http:
                    url = path.format(
                        id="0000", name="nothing", owner="cert:nobody-else", schedule="nothing"
                    )
                    async with http.request(method, url) as answer:
                        body = await answer.json()
                        if answer.status != 403 or str(action) not in body["message"]:
                            wrong.append(f"{method} {path} as {role}: {answer.status} {body}")
            finally:
                await runner.cleanup()
        return wrong

    with tempfile.TemporaryDirectory(prefix="joblet-") as directory:
        assert asyncio.run(scenario(f"{directory}/api.sock")) == []


if __name__ == "__main__":
    DOC.write_text(regenerated(DOC.read_text()))
