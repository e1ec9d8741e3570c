"""The one way Joblet writes a file others read while it changes: whole or not at all.

Written to a temporary name in the same directory, created with its final mode (a key is never
readable by others, not even for an instant), then renamed over the old file: a reader opens the
old file or the new one, never half of one. `durable` also syncs it to disk first (keys,
certificates, records that must survive a crash); files rewritten often and remade at every start
(hosts files, userdb records in /run) need not pay for that.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, *, mode: int, durable: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed what os.open was given
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
