#!/usr/bin/env bash
# `make demo`: a short tour of Joblet inside the sandbox's real systemd. Runs inside the sandbox.
set -uo pipefail

step() { printf '\n\033[1;36m$ %s\033[0m\n' "$*"; }
run() { step "$*"; "$@"; echo "(exit $?)"; }

run rnx job run --max-cpu=50 --max-memory=128M --max-tasks=64 --timeout=30s -- \
    python3 -c 'import os; print("hello from job", os.environ["JOB_ID"][:8]); print("cpus:", sorted(os.sched_getaffinity(0)))'
run rnx job run --max-memory=64 -- python3 -c 'b = bytearray(200 * 1024 * 1024)'
run rnx job run --timeout=1s -- sleep 10
step "rnx job run -d --name=ticker --max-memory=32M --max-cpu=20 -- sh -c 'for i in 1 2 3; ...'"
id=$(rnx job run -d --name=ticker --max-memory=32M --max-cpu=20 -- sh -c 'for i in 1 2 3; do echo tick $i; sleep 0.5; done')
echo "$id"
run systemctl show -p Slice -p MemoryMax -p CPUQuotaPerSecUSec -p TasksMax --no-pager "joblet-job-$id.service"
run rnx job log -f "$id"
run rnx job status "${id:0:8}"
run journalctl --no-pager -o cat -u "joblet-job-$id.service"
run rnx job list --limit 5
