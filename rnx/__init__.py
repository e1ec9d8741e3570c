"""rnx: the Joblet command line and Python client.

from rnx import Client
with Client() as client:
    job = client.run(["python3", "-c", "print('hi')"], max_memory="256M")
    for line in client.logs(job["id"], follow=True):
        print(line)
    print(client.wait(job["id"])["exit_code"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "RnxError"]

if TYPE_CHECKING:
    from rnx.client import Client
    from rnx.errors import RnxError


def __getattr__(name: str) -> Any:
    # Lazy: `rnx --help` must not pay for aiohttp's import.
    if name == "Client":
        from rnx.client import Client

        return Client
    if name == "RnxError":
        from rnx.errors import RnxError

        return RnxError
    raise AttributeError(name)
