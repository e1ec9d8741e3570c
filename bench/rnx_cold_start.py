"""Wall time of `rnx job run -- /bin/true` from a cold CLI process (imports, TLS handshake,
the job, its log stream), next to the interpreter's own start and `systemd-run --wait`.

    python -m bench.rnx_cold_start [-n 20]

Target: under 300 ms.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

from bench.common import client_config, pct


def timed(argv: list[str], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20)
    count = parser.parse_args().n
    rnx = shutil.which("rnx") or sys.exit("rnx is not on PATH")
    config = client_config()
    rows = {
        "python3 -c pass": timed([sys.executable, "-c", "pass"], count),
        "rnx --help": timed([rnx, "--help"], count),
        "rnx job run (Unix socket)": timed(
            [rnx, "--socket", "/run/joblet/joblet.sock", "job", "run", "--", "/bin/true"], count
        ),
        "rnx job run (TCP, mTLS)": timed(
            [rnx, "--config", config, "job", "run", "--", "/bin/true"], count
        ),
        "systemd-run --wait /bin/true": timed(
            ["systemd-run", "--quiet", "--wait", "--collect", "/bin/true"], count
        ),
    }
    print(f"cold start wall time, N={count}; milliseconds (target for rnx job run: < 300)")
    print(f"{'':32}{'p50':>8}{'p95':>8}")
    for label, samples in rows.items():
        print(f"{label:32}{pct(samples, 0.5):>8.0f}{pct(samples, 0.95):>8.0f}")


if __name__ == "__main__":
    main()
