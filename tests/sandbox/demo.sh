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

# Files in, data kept, jobs by name: an upload, a volume shared by two jobs, a network.
demo=$(mktemp -d) && cd "$demo" && printf 'city,temp\nOslo,4\nLima,19\nCairo,27\n' > data.csv
run rnx volume create demo-data --size=64M
run rnx job run --upload=data.csv --volume=demo-data -- python3 -c \
    'import csv; rows = list(csv.DictReader(open("data.csv"))); open("/volumes/demo-data/hottest", "w").write(max(rows, key=lambda r: int(r["temp"]))["city"]); print(len(rows), "rows read")'
run rnx job run --volume=demo-data:ro -- cat /volumes/demo-data/hottest
run rnx volume list
step "rnx job run -d --network=demo-net --name=web -- python3 -m http.server 8080"
web=$(rnx job run -d --network=demo-net --name=web -- python3 -m http.server 8080)
run rnx job run --network=demo-net -- python3 -c \
    'import time, urllib.request as u
for _ in range(50):  # until the server job listens
    try: print("web answered", u.urlopen("http://web:8080/").status); break
    except OSError: time.sleep(0.2)'
run rnx network list
rnx job stop "$web" >/dev/null
rnx volume remove demo-data >/dev/null && rnx network remove demo-net >/dev/null
if rnx runtime list 2>/dev/null | grep -q python-3.11-ml; then   # after `make runtimes`
  run rnx job run --runtime=python-3.11-ml --upload=data.csv -- python -c \
      'import pandas as pd; print(pd.read_csv("data.csv").describe())'
fi
