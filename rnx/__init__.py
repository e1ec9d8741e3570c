"""rnx: the Joblet command line and Python client.

from rnx import Client
with Client() as client:
    job = client.run(["python3", "-c", "print('hi')"], memory_bytes="256M")
    for line in client.logs(job.id, follow=True):
        print(line)
    print(client.wait(job.id).exit_code)

The answers are typed (rnx.client: Job, Volume, Network, Runtime, Health, ...); `from rnx import
Job` works for each of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "RnxError"]

if TYPE_CHECKING:
    from rnx.client import Client
    from rnx.errors import RnxError


def __getattr__(name: str) -> Any:
    # Lazy: `rnx --help` must not pay for the client's imports (http.client, ssl, json).
    if name == "RnxError":
        from rnx.errors import RnxError

        return RnxError
    # Only class names: the import system asks for submodules (`from rnx import values`) too.
    if name[:1].isupper():
        import rnx.client

        if name in rnx.client.__all__:
            return getattr(rnx.client, name)
    raise AttributeError(name)
